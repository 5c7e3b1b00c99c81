"""The transactional outbox: tasks a transaction promises, published after it commits.

`send(task, args, kwargs, ...)` writes an Outbox row in the caller's transaction and asks for a
best-effort publish after commit (its failure is logged, never the caller's error); nothing is
published if the transaction rolls back. Whatever
was not published then (the broker was down, the process died) is published by `drain_outbox`,
which beat runs every 10 s. A row is locked while it is published, so the after-commit publish
and the drain never both publish it.

A crash (or a failed database write) between the publish and the row's update publishes it a
second time. Both copies carry the row's task id and a header naming the copy; the worker lets
the first copy that starts claim the row (`is_duplicate`, called by config/celery.py) and skips
any other, so the task body runs once.
"""

import json
import logging
import uuid
from datetime import timedelta

from celery import current_app, shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import Outbox

logger = logging.getLogger(__name__)

# apply_async options a row may carry; each survives JSON and means the same when relayed late.
OPTIONS = frozenset({"queue", "priority", "countdown"})
COPY_HEADER = "outbox_copy"


def send(task, args=(), kwargs=None, *, expires: float | None = None, **options) -> Outbox:
    """Publish `task` once the current transaction commits (at once outside a transaction).

    `expires` (seconds from now): drop the task unsent, or unrun, after that. `countdown` counts
    from now, not from the publish. Raises ValueError for an unknown task or option and for
    arguments that are not JSON, before anything is written."""
    name = task if isinstance(task, str) else task.name
    if name not in current_app.tasks:
        raise ValueError(f"outbox: unknown task {name!r}")
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(
            f"outbox: unsupported options {sorted(unknown)}; allowed: {sorted(OPTIONS)}"
        )
    args, kwargs = list(args), dict(kwargs or {})
    try:
        json.dumps([args, kwargs, options])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"outbox: {name} arguments must be JSON: {exc}") from None
    expires_at = timezone.now() + timedelta(seconds=expires) if expires else None
    row = Outbox.objects.create(
        task=name, args=args, kwargs=kwargs, options=options, expires_at=expires_at
    )
    # robust: whatever goes wrong here is logged and left to the drain, never the caller's 500.
    transaction.on_commit(lambda: publish(row.pk), robust=True)
    return row


def publish(pk: int) -> bool:
    """Publish one pending row; False when it is gone, taken, expired or the broker is down."""
    from .api import BROKER_ERRORS, is_redis_full

    try:
        with transaction.atomic():
            row = (
                Outbox.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, published_at__isnull=True)
                .first()
            )
            if row is None:
                return False
            now = timezone.now()
            if row.expires_at and row.expires_at <= now:
                logger.warning("outbox: %s expired unpublished; dropped", row)
                row.delete()
                return False
            options = dict(row.options)
            if countdown := options.pop("countdown", None):
                options["eta"] = row.created_at + timedelta(seconds=countdown)
            # No publish retries: the request that sent it should not wait; the drain retries.
            current_app.tasks[row.task].apply_async(
                row.args,
                row.kwargs,
                task_id=str(row.task_id),
                headers={COPY_HEADER: uuid.uuid4().hex},
                expires=row.expires_at,
                retry=False,
                **options,
            )
            mark_published(row, now)
            return True
    except Exception as exc:
        if isinstance(exc, BROKER_ERRORS) or is_redis_full(exc):
            logger.warning("outbox: row %s not published yet (%s); the drain retries", pk, exc)
            return False
        raise


def mark_published(row: Outbox, now) -> None:
    row.published_at = now
    row.save(update_fields=["published_at"])


def is_duplicate(request) -> bool:
    """True for a copy of an outbox row whose other copy already started: skip it.

    The first copy to start claims the row with one conditional UPDATE (it waits while the
    publisher still holds the row). The same copy redelivered keeps its claim."""
    copy = getattr(request, COPY_HEADER, None)
    if not copy:
        return False  # not published by the outbox
    rows = Outbox.objects.filter(task_id=request.id)
    try:
        if rows.filter(Q(claimed_by="") | Q(claimed_by=copy)).update(claimed_by=copy):
            return False
        # No row: purged after OUTBOX_KEEP_SECONDS, nothing left to compare with; run it.
        return rows.exists()
    except DatabaseError as exc:
        # Rather twice than never: a copy that cannot be checked runs.
        logger.warning(
            "outbox: %s[%s] not checked for a first copy (%s); run", request.task, request.id, exc
        )
        return False


@shared_task
def drain_outbox(limit: int = 500) -> int:
    """Publish what the after-commit publish missed; forget what was published long ago."""
    pending = Outbox.objects.filter(published_at__isnull=True).order_by("created_at")
    sent = 0
    for pk in list(pending.values_list("pk", flat=True)[:limit]):
        try:
            sent += publish(pk)
        except Exception:  # e.g. a task renamed since: one bad row must not hold up the others
            logger.exception("outbox: row %s could not be published", pk)
    keep = timezone.now() - timedelta(seconds=settings.OUTBOX_KEEP_SECONDS)
    Outbox.objects.filter(published_at__lt=keep).delete()
    return sent
