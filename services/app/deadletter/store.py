"""Writing, replaying and clearing dead letters, and counting redeliveries.

Who writes what:
- the worker's consumer (deadletter/consumer.py): messages it cannot run (unknown task,
  undecodable body, content type other than JSON), before it acknowledges them;
- the worker's request (config/worker.py): tasks over their redelivery cap and tasks that
  failed after their last retry, with the message as delivered;
- collect_dead_lettered (deadletter/tasks.py): what RabbitMQ dead-lettered itself.

A replay republishes the message to its queue with the header `deadletter_entry`; the entry is
deleted when that task succeeds, and updated (not duplicated) when it lands here again.
"""

import base64
import json
import logging

from celery import signals
from django.db import connection
from django.utils import timezone

from .models import DeadLetter

logger = logging.getLogger(__name__)

REPLAY_HEADER = "deadletter_entry"
# Broker-set and delivery-specific headers that a replay must not carry.
NOT_REPLAYED = ("redelivered", REPLAY_HEADER)
REPLAYED_PROPERTIES = ("correlation_id", "reply_to", "priority", "delivery_mode")


def jsonable(value):
    """Headers from RabbitMQ may hold timestamps or bytes: store them as JSON can."""
    return json.loads(json.dumps(value, default=str))


def encode_body(body) -> tuple[str, bool]:
    if isinstance(body, str):
        return body, False
    body = bytes(body or b"")
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def message_fields(message) -> dict:
    """A kombu message, as it arrived: headers, body, properties and where it came from."""
    headers = jsonable(message.headers or {})
    delivery_info = jsonable(
        {k: v for k, v in (message.delivery_info or {}).items() if k != "delivery_tag"}
    )
    properties = jsonable(
        {
            k: v
            for k, v in (message.properties or {}).items()
            if k not in ("delivery_info", "delivery_tag", "body_encoding", "application_headers")
        }
    )
    body, is_base64 = encode_body(message.body)
    return {
        # Dead-lettered by RabbitMQ: the queue it died in. Otherwise: the routing key, which
        # is the queue's name here (config/pools.py).
        "queue": headers.get("x-first-death-queue")
        or delivery_info.get("routing_key")
        or delivery_info.get("exchange")
        or "",
        "task_name": str(headers.get("task") or "")[:255],
        "task_id": str(headers.get("id") or "")[:255],
        "headers": headers,
        "body": body,
        "body_is_base64": is_base64,
        "content_type": message.content_type or "",
        "content_encoding": message.content_encoding or "",
        "properties": properties,
        "delivery_info": delivery_info,
    }


def record(reason: str, fields: dict, error: str = "") -> DeadLetter:
    """Insert the entry, or update the one this message was replayed from."""
    fields = {**fields, "reason": reason, "error": error, "replayed_at": None}
    replayed_from = (fields.get("headers") or {}).get(REPLAY_HEADER)
    if replayed_from and DeadLetter.objects.filter(pk=replayed_from).update(**fields):
        return DeadLetter.objects.get(pk=replayed_from)
    return DeadLetter.objects.create(**fields)


def record_message(reason: str, message, error: str = "") -> DeadLetter:
    """Write through the result backend's retry (config/results.py): a database blip does not
    lose the entry; a longer outage raises, and the caller decides what happens to the message."""
    from config.celery import app

    fields = message_fields(message)
    entry = app.backend._ensure_retryable(record, reason, fields, error)
    logger.warning(
        "dead letter %s kept (%s): %s[%s] from %s: %s",
        entry.pk,
        reason,
        fields["task_name"] or "?",
        fields["task_id"] or "-",
        fields["queue"] or "?",
        error,
    )
    return entry


# ---- Redeliveries ---------------------------------------------------------------------------


def count_delivery(task_id: str) -> int:
    """A redelivery of task_id: how many deliveries that makes (the first one was not counted)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO deadletter_deliverycount (task_id, deliveries, updated_at)"
            " VALUES (%s, 2, now()) ON CONFLICT (task_id) DO UPDATE"
            " SET deliveries = deadletter_deliverycount.deliveries + 1, updated_at = now()"
            " RETURNING deliveries",
            [task_id],
        )
        return cursor.fetchone()[0]


def forget_deliveries(task_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM deadletter_deliverycount WHERE task_id = %s", [task_id])


# ---- Replay ---------------------------------------------------------------------------------


class CannotReplay(Exception):
    pass


def replay(entry: DeadLetter) -> None:
    """Publish the message again, as it was, to its queue (RabbitMQ confirms the publish)."""
    from django.conf import settings

    from config.celery import app

    queue = app.amqp.queues.get(entry.queue)
    if queue is None:
        raise CannotReplay(
            f"entry {entry.pk}: queue {entry.queue!r} is not declared "
            f"(CELERY_TASK_QUEUES: {','.join(app.amqp.queues)})"
        )
    body = base64.b64decode(entry.body) if entry.body_is_base64 else entry.body.encode("utf-8")
    headers = {k: v for k, v in entry.headers.items() if k not in NOT_REPLAYED}
    headers = {k: v for k, v in headers.items() if not k.startswith("x-")}  # RabbitMQ's own
    properties = {k: entry.properties[k] for k in REPLAYED_PROPERTIES if k in entry.properties}
    with app.connection_for_write() as conn, conn.Producer() as producer:
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers={**headers, REPLAY_HEADER: entry.pk},
            content_type=entry.content_type or "application/octet-stream",
            content_encoding=entry.content_encoding or "binary",
            retry=True,
            retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
            confirm_timeout=settings.BROKER_CONFIRM_TIMEOUT,
            **properties,
        )
    DeadLetter.objects.filter(pk=entry.pk).update(replayed_at=timezone.now())


@signals.task_success.connect
def remove_replayed_entry(sender=None, **_kwargs):
    """A replayed message succeeded: its entry has served its purpose."""
    entry = getattr(getattr(sender, "request", None), REPLAY_HEADER, None)
    if entry:
        DeadLetter.objects.filter(pk=entry).delete()
