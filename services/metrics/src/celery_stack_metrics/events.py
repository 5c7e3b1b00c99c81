"""State built from the Celery event stream: workers, beat ticks, publish-to-start wait, and
the worker's `task-internal-error` reports."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("celery_stack_metrics.events")


@dataclass
class WorkerState:
    nodename: str
    pool: str
    last_heartbeat: float  # local receive time (unix seconds)
    active: int


def pool_of(nodename: str) -> str:
    return nodename.split("@", 1)[0] if "@" in nodename else ""


# `reason` of the worker's task-internal-error event (services/app/config/worker.py); anything
# else is counted as "other", so a new or malformed value cannot add series without bound.
INTERNAL_ERROR_REASONS = ("result_not_recorded", "internal")


def internal_error_reason(value) -> str:
    return value if value in INTERNAL_ERROR_REASONS else "other"


def _eta_seconds(eta) -> float | None:
    if not eta:
        return None
    if isinstance(eta, (int, float)):
        return float(eta)
    try:
        dt = datetime.fromisoformat(str(eta))
    except ValueError:
        return None
    if dt.tzinfo is None:
        # Celery sends naive ETAs in UTC when enable_utc is on (the default).
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class EventState:
    """Thread-safe; fed by the receiver thread, read by the collector."""

    def __init__(self, *, beat_task: str, max_tracked: int, observe_wait, clock=time.time):
        self.beat_task = beat_task
        self.max_tracked = max_tracked
        self.observe_wait = observe_wait  # callable(queue, seconds)
        self.clock = clock
        self.lock = threading.Lock()
        self.workers: dict[str, WorkerState] = {}
        self.sent: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self.beat_last_tick: float | None = None
        self.internal_errors: dict[tuple[str, str], int] = {}  # (pool, reason) -> count
        self.events_seen = 0
        self.evicted = 0

    # -- event handling ---------------------------------------------------------------------
    def on_event(self, event: dict) -> None:
        kind = event.get("type", "")
        now = self.clock()
        with self.lock:
            self.events_seen += 1
            if kind in ("worker-heartbeat", "worker-online"):
                name = event.get("hostname") or ""
                if name:
                    self.workers[name] = WorkerState(
                        nodename=name,
                        pool=pool_of(name),
                        last_heartbeat=now,
                        active=int(event.get("active") or 0),
                    )
            elif kind == "worker-offline":
                self.workers.pop(event.get("hostname") or "", None)
            elif kind == "task-sent":
                self._on_sent(event, now)
            elif kind == "task-started":
                self._on_started(event)
            elif kind in ("task-revoked", "task-rejected"):
                self.sent.pop(event.get("uuid") or "", None)
            elif kind == "task-internal-error":
                # Sent by the worker's main process when a task's result could not be recorded
                # (the task was requeued) or another error was raised outside the task body.
                key = (pool_of(event.get("hostname") or ""), internal_error_reason(event.get("reason")))
                self.internal_errors[key] = self.internal_errors.get(key, 0) + 1

    def _on_sent(self, event: dict, now: float) -> None:
        if event.get("name") == self.beat_task:
            self.beat_last_tick = now
        uuid = event.get("uuid")
        queue = event.get("queue") or event.get("routing_key")
        if not uuid or not queue:
            return
        sent_at = float(event.get("timestamp") or now)
        eta = _eta_seconds(event.get("eta"))
        if eta is not None and eta > sent_at:
            sent_at = eta  # wait time excludes a countdown/ETA delay
        self.sent[uuid] = (sent_at, queue)
        self.sent.move_to_end(uuid)
        while len(self.sent) > self.max_tracked:
            self.sent.popitem(last=False)
            self.evicted += 1

    def _on_started(self, event: dict) -> None:
        entry = self.sent.pop(event.get("uuid") or "", None)
        if entry is None:
            return
        sent_at, queue = entry
        started = float(event.get("timestamp") or self.clock())
        self.observe_wait(queue, max(0.0, started - sent_at))

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self, *, live_after: float, expire_after: float):
        """Drop long-silent workers, return (workers, beat_last_tick, tracked)."""
        now = self.clock()
        with self.lock:
            for name in [n for n, w in self.workers.items() if now - w.last_heartbeat > expire_after]:
                log.info("dropping silent worker", extra={"worker": name})
                del self.workers[name]
            workers = [
                (WorkerState(**vars(w)), now - w.last_heartbeat <= live_after)
                for w in self.workers.values()
            ]
            return workers, self.beat_last_tick, len(self.sent)

    def internal_error_counts(self) -> dict[tuple[str, str], int]:
        """{(pool, reason): task-internal-error events received since start}"""
        with self.lock:
            return dict(self.internal_errors)


class EventReceiverThread(threading.Thread):
    """Consumes the event stream forever, reconnecting with backoff."""

    def __init__(self, app, state: EventState):
        super().__init__(name="event-receiver", daemon=True)
        self.app = app
        self.state = state
        self.connected = False
        self.last_error: str | None = None
        self._stop_event = threading.Event()
        self._receiver = None

    def stop(self):
        self._stop_event.set()
        if self._receiver is not None:
            self._receiver.should_stop = True

    def run(self):
        backoff = 1.0
        while not self._stop_event.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    self._receiver = self.app.events.Receiver(
                        conn, handlers={"*": self.state.on_event}
                    )
                    self.connected = True
                    self.last_error = None
                    log.info("event receiver connected", extra={"broker": conn.as_uri()})
                    backoff = 1.0
                    # wakeup=True asks every worker for a heartbeat now, so state fills at once.
                    self._receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:  # noqa: BLE001 - any broker failure: log, back off, retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "event receiver disconnected; retrying",
                    extra={"error": self.last_error, "retry_in_seconds": backoff},
                )
            finally:
                self.connected = False
            self._stop_event.wait(backoff)
            backoff = min(backoff * 2, 30.0)
