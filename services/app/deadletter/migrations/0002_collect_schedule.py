"""Beat moves RabbitMQ's dead letters into the store (deadletter/tasks.py) every 30 s; on Redis
the task finds nothing to do. Editable in the admin."""

from django.db import migrations

from config.periodic import every_seconds


class Migration(migrations.Migration):
    dependencies = [
        ("deadletter", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        every_seconds(
            "collect-dead-lettered", "deadletter.tasks.collect_dead_lettered", "default", 30
        )
    ]
