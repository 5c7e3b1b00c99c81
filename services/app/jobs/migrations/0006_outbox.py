"""The mail outbox becomes the outbox of any task (jobs/outbox.py): pending mail moves over, and
the beat schedule drains the new table."""

import uuid

from django.db import migrations, models

SEND_EMAIL = "jobs.tasks.send_email"


def move_pending_mail(apps, schema_editor):
    MailOutbox = apps.get_model("jobs", "MailOutbox")
    Outbox = apps.get_model("jobs", "Outbox")
    for mail in MailOutbox.objects.filter(published_at__isnull=True).order_by("id"):
        row = Outbox.objects.create(
            task=SEND_EMAIL, args=[mail.to, mail.subject, mail.body], expires_at=mail.expires_at
        )
        # auto_now_add stamped now; keep the mail's age.
        Outbox.objects.filter(pk=row.pk).update(created_at=mail.created_at)


def move_pending_mail_back(apps, schema_editor):
    MailOutbox = apps.get_model("jobs", "MailOutbox")
    Outbox = apps.get_model("jobs", "Outbox")
    for row in Outbox.objects.filter(published_at__isnull=True, task=SEND_EMAIL).order_by("id"):
        to, subject, body = row.args
        MailOutbox.objects.create(to=to, subject=subject, body=body, expires_at=row.expires_at)


def drain_the_outbox(apps, schema_editor, name="drain-outbox", task="jobs.outbox.drain_outbox"):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=("drain-mail-outbox", "drain-outbox")).update(
        name=name, task=task
    )


def drain_the_mail_outbox(apps, schema_editor):
    drain_the_outbox(
        apps, schema_editor, name="drain-mail-outbox", task="jobs.outbox.drain_mail_outbox"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_beat_lease"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="Outbox",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("task", models.CharField(max_length=200)),
                ("args", models.JSONField(default=list)),
                ("kwargs", models.JSONField(default=dict)),
                ("options", models.JSONField(default=dict)),
                ("task_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("published_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("claimed_by", models.CharField(blank=True, default="", max_length=32)),
            ],
            options={"verbose_name_plural": "outbox", "ordering": ("id",)},
        ),
        migrations.AddIndex(
            model_name="outbox",
            index=models.Index(
                condition=models.Q(("published_at__isnull", True)),
                fields=["created_at"],
                name="jobs_outbox_pending",
            ),
        ),
        migrations.RunPython(move_pending_mail, move_pending_mail_back),
        migrations.RunPython(drain_the_outbox, drain_the_mail_outbox),
        migrations.DeleteModel(name="MailOutbox"),
    ]
