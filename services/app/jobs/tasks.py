"""The tasks. Queues come from CELERY_TASK_ROUTES in config/settings.py.

Delivery guarantees, per task:
- IDEMPOTENT tasks acknowledge late and are rejected (requeued) when their worker process dies,
  so a crash or an OOM kill means "run again", never "lost". They must be safe to run twice.
- send_email is NOT idempotent (a second run sends a second mail), so it acknowledges early:
  at most once, with explicit retries for transient SMTP failures.
"""

import logging
import os
import signal
import smtplib
import tempfile
import time
from pathlib import Path

from celery import chain, chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import send_mail

from .models import Widget

logger = logging.getLogger(__name__)

IDEMPOTENT = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(**IDEMPOTENT)
def add(x: float, y: float) -> float:
    return x + y


@shared_task(**IDEMPOTENT)
def mul(x: float, y: float) -> float:
    return x * y


@shared_task(**IDEMPOTENT)
def xsum(numbers: list[float]) -> float:
    return sum(numbers)


@shared_task(**IDEMPOTENT)
def count_widgets() -> int:
    return Widget.objects.count()


@shared_task(**IDEMPOTENT)
def rename_widget(widget_id: int, name: str) -> dict:
    """Idempotent: setting a name twice leaves the same state."""
    updated = Widget.objects.filter(pk=widget_id).update(name=name)
    if not updated:
        raise Widget.DoesNotExist(f"Widget {widget_id} does not exist")
    return {"id": widget_id, "name": name}


class TransientEmailError(Exception):
    """An SMTP failure worth retrying (4xx reply, dropped or refused connection)."""


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):  # {address: (code, message)}
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | TimeoutError)


@shared_task(bind=True, max_retries=settings.EMAIL_TASK_MAX_RETRIES)
def send_email(self, to: str, subject: str, body: str) -> int:
    """Send one mail. Transient SMTP errors retry with exponential backoff and full jitter,
    at most EMAIL_TASK_MAX_RETRIES times; permanent ones (5xx, bad recipient) fail at once."""
    try:
        return send_mail(subject, body, None, [to])
    except (smtplib.SMTPException, OSError) as exc:
        if not is_transient(exc):
            raise
        countdown = get_exponential_backoff_interval(
            factor=settings.EMAIL_TASK_RETRY_BACKOFF,
            retries=self.request.retries,
            maximum=settings.EMAIL_TASK_RETRY_BACKOFF_MAX,
            full_jitter=True,
        )
        logger.warning(
            "send_email to %s failed (%s), retry %d/%d in %ss",
            to,
            exc,
            self.request.retries + 1,
            self.max_retries,
            countdown,
        )
        raise self.retry(exc=TransientEmailError(str(exc)), countdown=countdown) from exc


class JobTimedOut(Exception):
    """long_job reached its soft time limit; its partial output was removed."""


@shared_task(bind=True, track_started=True, **IDEMPOTENT)  # STARTED: it runs for a while
def long_job(self, seconds: int = 10, steps: int = 20) -> dict:
    """A slow job that reports progress and cleans up when it runs out of time.

    It writes its output to a scratch file and publishes it only when complete, so running it
    again after a crash (acks_late) starts from a clean slate.
    """
    steps = max(1, min(steps, 1000))
    scratch = Path(tempfile.gettempdir()) / f"long_job-{self.request.id}.part"
    try:
        with scratch.open("w") as out:
            for step in range(1, steps + 1):
                time.sleep(seconds / steps)
                out.write(f"step {step}\n")
                self.update_state(
                    state="PROGRESS",
                    meta={"percent": round(100 * step / steps), "step": step, "steps": steps},
                )
    except SoftTimeLimitExceeded:
        done = self.AsyncResult(self.request.id).info or {}
        scratch.unlink(missing_ok=True)
        percent = done.get("percent", 0) if isinstance(done, dict) else 0
        raise JobTimedOut(
            f"long_job hit its soft time limit at {percent}% done; partial output removed"
        ) from None
    scratch.unlink(missing_ok=True)
    return {
        "seconds": seconds,
        "steps": steps,
        "worker": self.request.hostname,
        "redelivered": bool((self.request.delivery_info or {}).get("redelivered")),
        "pid": os.getpid(),
    }


@shared_task(rate_limit=settings.PARTNER_RATE_LIMIT, **IDEMPOTENT)
def notify_partner(widget_id: int) -> dict:
    """Calls a (pretend) partner API whose quota is PARTNER_RATE_LIMIT per worker."""
    return {"widget_id": widget_id, "at": time.time()}


@shared_task(**IDEMPOTENT)
def compile_report(parts: list, title: str) -> dict:
    *totals, widget_count = parts
    return {
        "title": title,
        "widget_count": widget_count,
        "totals": totals,
        "grand_total": sum(totals),
    }


@shared_task(**IDEMPOTENT)
def publish_report(report: dict) -> dict:
    return {**report, "published_at": time.time()}


def report_workflow(title: str, chunks: list[list[float]]):
    """chain( chord( group(xsum per chunk + count_widgets) -> compile_report ) -> publish )."""
    header = [xsum.si(chunk) for chunk in chunks] + [count_widgets.si()]
    return chain(chord(header, compile_report.s(title=title)), publish_report.s())


@shared_task
def beat_heartbeat() -> float:
    """Sent by beat every 15 s; monitoring reads its task-sent events as beat's pulse."""
    return time.time()


@shared_task(**IDEMPOTENT)
def kill_own_process_for_tests() -> None:
    """Test only (tests/test_deadletter.py): dies as an OOM kill would, on every delivery."""
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task(max_deliveries=2, **IDEMPOTENT)
def kill_own_process_capped_at_2_for_tests() -> None:
    """Test only: the same, with its own redelivery cap."""
    os.kill(os.getpid(), signal.SIGKILL)
