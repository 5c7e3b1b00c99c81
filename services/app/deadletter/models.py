"""What no worker could run, kept for an operator to inspect, replay or purge (docs/faults.md)."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class DeadLetter(models.Model):
    """One message, as the broker delivered it, and why it was set aside. Monitoring counts the
    rows per reason: the table and the `reason` column are part of its query."""

    class Reason(models.TextChoices):
        UNKNOWN_TASK = "unknown_task", "no such task in the worker"
        UNDECODABLE = "undecodable", "body or content type not accepted"
        REDELIVERY_CAP = "redelivery_cap", "worker lost too many times"
        RETRIES_EXHAUSTED = "retries_exhausted", "failed after its last retry"
        BROKER_DEAD_LETTERED = "broker_dead_lettered", "dead-lettered by RabbitMQ"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=32, choices=Reason.choices, db_index=True)
    queue = models.CharField(max_length=255, blank=True)
    task_name = models.CharField(max_length=255, blank=True)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    headers = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    body = models.TextField(blank=True)
    body_is_base64 = models.BooleanField(default=False, help_text="the body was not UTF-8")
    content_type = models.CharField(max_length=255, blank=True)
    content_encoding = models.CharField(max_length=64, blank=True)
    properties = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    delivery_info = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self):
        return f"{self.reason} {self.task_name or '?'}[{self.task_id or '-'}] on {self.queue}"


class DeliveryCount(models.Model):
    """How many times a task's message was delivered, written for redeliveries only (the first
    delivery costs nothing). In Postgres, so the count outlives the worker that died."""

    task_id = models.CharField(max_length=255, primary_key=True)
    deliveries = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.task_id}: {self.deliveries} deliveries"
