"""A default periodic task every N seconds, added by a data migration and then editable in the
admin (Periodic tasks). Migrations call `every_seconds(...)`, so each schedule is one line."""

import json

from django.db import migrations


def every_seconds(name: str, task: str, queue: str, seconds: int) -> migrations.RunPython:
    """The migration operation; a missed run expires after one interval (the next replaces it)."""

    def create(apps, schema_editor):
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": task,
                "queue": queue,
                "expire_seconds": seconds,
                "kwargs": json.dumps({}),
                "interval": interval,
            },
        )

    def delete(apps, schema_editor):
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()

    return migrations.RunPython(create, delete)
