"""Beat moves RabbitMQ's dead letters into the store (deadletter/tasks.py) every 30 s; on Redis
the task finds nothing to do. Editable in the admin."""

import json

from django.db import migrations

NAME = "collect-dead-lettered"


def create_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    interval, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={
            "task": "deadletter.tasks.collect_dead_lettered",
            "queue": "default",
            "expire_seconds": 30,  # a missed run is replaced by the next one
            "kwargs": json.dumps({}),
            "interval": interval,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deadletter", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
