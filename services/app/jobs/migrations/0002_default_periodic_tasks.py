"""Default schedules, created once and then editable in the admin (Periodic tasks)."""

import json

from django.db import migrations

SCHEDULES = [
    # Deletes results older than CELERY_RESULT_EXPIRES. The name matches the entry beat would
    # otherwise add on its own, so there is exactly one.
    {
        "name": "celery.backend_cleanup",
        "task": "celery.backend_cleanup",
        "crontab": {"minute": "0", "hour": "4"},
        "queue": "default",
        "expire_seconds": 3600,
    },
    # Beat's pulse: monitoring alerts when these task-sent events stop. Expires quickly so a
    # backlog of stale pulses never builds up behind a stopped high pool.
    {
        "name": "beat-heartbeat",
        "task": "jobs.tasks.beat_heartbeat",
        "interval": {"every": 15, "period": "seconds"},
        "queue": "high",
        "expire_seconds": 15,
    },
]


def create_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    for entry in SCHEDULES:
        schedule = {}
        if "crontab" in entry:
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                timezone="UTC",
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                **entry["crontab"],
            )
        else:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(**entry["interval"])
        PeriodicTask.objects.update_or_create(
            name=entry["name"],
            defaults={
                "task": entry["task"],
                "queue": entry["queue"],
                "expire_seconds": entry["expire_seconds"],
                "kwargs": json.dumps({}),
                **schedule,
            },
        )


def delete_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[entry["name"] for entry in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, delete_schedules)]
