"""Beat publishes the mail outbox's leftovers (jobs/outbox.py) every 10 s; editable in the admin."""

from django.db import migrations

from config.periodic import every_seconds


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0003_api_token_mail_outbox"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [every_seconds("drain-mail-outbox", "jobs.outbox.drain_mail_outbox", "high", 10)]
