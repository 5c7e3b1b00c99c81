"""Beat publishes the mail outbox's leftovers (jobs/outbox.py) every 10 s; editable in the admin."""

import json

from django.db import migrations

NAME = "drain-mail-outbox"


def create_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    interval, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={
            "task": "jobs.outbox.drain_mail_outbox",
            "queue": "high",
            "expire_seconds": 10,  # a missed run is replaced by the next one
            "kwargs": json.dumps({}),
            "interval": interval,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_api_token_mail_outbox"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
