"""What runs in the worker's main process beside Celery's consumer, so that faults lose nothing
and wedge nothing. Installed by config/celery.py.

- RecordingRequest: a task whose result could not be recorded (ResultNotRecorded, see
  config/results.py) goes back to its queue, is reported as a `task-internal-error` event, and
  pauses the DatabaseGate. A task over its redelivery cap or failed on its last retry is kept
  in the dead-letter store (deadletter/), its message as delivered.
- DatabaseGate: while the database is unreachable the worker stops consuming, instead of taking
  message after message it cannot record; a thread probes the database and consuming resumes
  by itself.
- Liveness: the heartbeat file says "making progress", not merely "the loop runs". A thread
  checks every CELERY_HEARTBEAT_INTERVAL that the event loop ticks and that the worker is not
  idle while its queues hold messages it could take. A worker stalled for CELERY_WORKER_STALL_
  SECONDS exits (warm if its loop still runs), so Compose's restart policy or the kubelet
  replaces it: nothing else restarts an unhealthy container under Compose.
- Leases (Redis): the thread also renews, in the broker, the visibility of every message the
  worker holds (running, waiting for its countdown or its rate limit). Each pool then needs a
  visibility timeout of only its hard time limit plus a margin, and a worker that is killed
  outright has its tasks redelivered after that, not after a global hour.
"""

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from celery import bootsteps
from celery.exceptions import Ignore, Reject, Retry
from celery.utils.sysinfo import load_average
from celery.worker import heartbeat, state
from celery.worker.request import Request
from django.conf import settings

logger = logging.getLogger("celery.worker.liveness")

PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport: queue + sep + priority step
PRIORITY_STEPS = (3, 6, 9)


def touch_heartbeat() -> None:
    Path(settings.CELERY_HEARTBEAT_FILE).touch()


# Delivery tags of the tasks cancelled because the broker connection dropped (see cancel below).
CANCELLED_ON_CONNECTION_LOSS: set[str] = set()


class RecordingRequest(Request):
    """Celery's Request, plus: an unrecorded result closes the gate and is reported."""

    def __init__(self, message, *args, **kwargs):
        super().__init__(message, *args, **kwargs)
        # SQS flags no redelivery; its receive count says it (RecordingTask counts deliveries).
        received = (message.delivery_info or {}).get("sqs_message", {}).get("Attributes", {})
        if int(received.get("ApproximateReceiveCount", 1)) > 1:
            self._delivery_info["redelivered"] = True

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        from .results import ResultNotRecorded

        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # ExceptionWithTraceback
        internal = getattr(exc_info, "internal", False) and not isinstance(
            exc, Reject | Ignore | Retry
        )
        if isinstance(exc, ResultNotRecorded) or internal:
            reason = "result_not_recorded" if isinstance(exc, ResultNotRecorded) else "internal"
            logger.error(
                "task %s[%s] not recorded (%s): %s; %s",
                self.name,
                self.id,
                reason,
                exc,
                "requeued" if self.task.acks_late and getattr(exc, "requeue", False) else "done",
            )
            self.send_event("task-internal-error", reason=reason, exception=repr(exc)[:500])
            if isinstance(exc, ResultNotRecorded) and DatabaseGate.current is not None:
                DatabaseGate.current.pause(str(exc))
        reason = self._dead_letter_reason(exc)
        if reason and self.message is not None:
            from deadletter.store import record_message

            from .results import write_off_loop

            write_off_loop(record_message, reason, self.message, f"{type(exc).__name__}: {exc}")
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _dead_letter_reason(self, exc) -> str | None:
        """Over its redelivery cap, or failed on its last retry: keep it as a dead letter."""
        from celery.exceptions import MaxRetriesExceededError, Terminated, WorkerLostError

        from deadletter.models import DeadLetter

        from .celery import DeliveryLimitReached

        if isinstance(exc, DeliveryLimitReached):
            return DeadLetter.Reason.REDELIVERY_CAP
        if isinstance(exc, Reject | Ignore | Retry | WorkerLostError | Terminated | SystemExit):
            return None
        retries, limit = self.request_dict.get("retries") or 0, self.task.max_retries
        if isinstance(exc, MaxRetriesExceededError) or (limit and retries >= limit > 0):
            return DeadLetter.Reason.RETRIES_EXHAUSTED
        return None

    def cancel(self, pool, signal=None, emit_retry=True):
        """Celery cancels a running acks_late task when the broker connection drops (it could
        not be acknowledged any more). Its message is still leased to this worker: remember it,
        so the lease is released when the consumer reconnects and the task runs again soon."""
        if self.message is not None and self.task.acks_late:
            CANCELLED_ON_CONNECTION_LOSS.add(self.message.delivery_tag)
        return super().cancel(pool, signal, emit_retry)

    def _success_was_stored(self):
        """Celery reads the result on the event loop when a pool process is lost. Bounded here:
        past a few seconds it counts as "not stored", Celery's own answer for a dead backend."""
        from .results import run_off_loop

        return run_off_loop(super()._success_was_stored, timeout=5, default=False)


class BoundedHeart(heartbeat.Heart):
    """Celery's worker heartbeat, whose publish gives up after one retry.

    Celery sends `worker-heartbeat` from the event loop with retry=True and no retry policy,
    which kombu reads as "retry forever": while the broker is silent (a partition, a frozen
    Redis) the loop never comes back from that publish, and the worker takes nothing, even after
    the broker returns, until the publish happens to succeed. Bounded, a lost heartbeat is
    buffered by the event dispatcher and the loop goes on.
    """

    RETRY_POLICY: ClassVar[dict] = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 1,
        "interval_max": 1,
    }

    def _send(self, event, retry=True):
        if self._send_sent_signal is not None:
            self._send_sent_signal(sender=self)
        return self.eventer.send(
            event,
            freq=self.interval,
            active=len(state.active_requests),
            processed=state.all_total_count[0],
            loadavg=load_average(),
            retry=retry,
            retry_policy=self.RETRY_POLICY,
            **state.SOFTWARE_INFO,
        )


class TimerStep(bootsteps.StartStopStep):
    """A consumer step that runs a timer on the event loop while the consumer runs."""

    timer_ref = None

    def stop(self, consumer):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None


class DatabaseGate(TimerStep):
    """Consumer step: stop consuming while the database is down, resume when it answers."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    current: "DatabaseGate | None" = None

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.consumer = None
        self.closed_queues: list[str] = []
        self.database_back = threading.Event()

    @property
    def is_closed(self) -> bool:
        return bool(self.closed_queues)

    def start(self, consumer):
        self.consumer = consumer
        DatabaseGate.current = self
        self.timer_ref = consumer.timer.call_repeatedly(1.0, self._maybe_reopen, priority=10)
        if self.closed_queues:  # the consumer restarted (broker reconnect) while closed
            for name in self.closed_queues:
                if consumer.task_consumer.consuming_from(name):
                    consumer.cancel_task_queue(name)

    def pause(self, reason: str) -> None:
        """Called on the event loop (RecordingRequest.on_failure)."""
        if self.is_closed or self.consumer is None or self.consumer.task_consumer is None:
            return
        self.closed_queues = [q.name for q in self.consumer.task_consumer.queues]
        logger.warning(
            "database unreachable: consuming paused on %s until it answers (%s)",
            ",".join(self.closed_queues),
            reason,
        )
        for name in self.closed_queues:
            self.consumer.cancel_task_queue(name)
        self.database_back.clear()
        threading.Thread(target=self._probe, name="database-probe", daemon=True).start()

    def _probe(self) -> None:
        from django.db import connection

        from .results import close_broken_connections

        while not self.database_back.is_set():
            time.sleep(settings.DATABASE_PROBE_INTERVAL)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                self.database_back.set()
            except Exception as exc:  # any failure: still down
                logger.info("database still unreachable: %s", exc)
                close_broken_connections()
        close_broken_connections()

    def _maybe_reopen(self) -> None:
        if not self.is_closed or not self.database_back.is_set():
            return
        if self.consumer.task_consumer is None:
            return  # reconnecting to the broker; try on the next tick
        logger.warning(
            "database answers again: consuming resumed on %s", ",".join(self.closed_queues)
        )
        for name in self.closed_queues:
            self.consumer.add_task_queue(name)
        self.closed_queues = []

    def shutdown(self, consumer):
        self.stop(consumer)
        self.database_back.set()  # ends the probe thread
        DatabaseGate.current = None


class Liveness(TimerStep):
    """Consumer step: the event loop records what the watchdog thread needs, every interval."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.watchdog = None

    def start(self, consumer):
        if self.watchdog is not None:
            # The consumer reconnected: the messages held before cannot be acknowledged any
            # more (their delivery tags belonged to the old channel; running ones were
            # cancelled). Release their leases so the next sweep, within 10 s, requeues them,
            # instead of a full visibility timeout later.
            self.watchdog.release_leases()
        if self.watchdog is None:
            # The queues this worker was started for, even while some are cancelled.
            self.watchdog = Watchdog(consumer, [q.name for q in consumer.task_consumer.queues])
            self.watchdog.start()
        self.tick(consumer)
        touch_heartbeat()  # connected and consuming: ready
        self.timer_ref = consumer.timer.call_repeatedly(
            settings.CELERY_HEARTBEAT_INTERVAL, self.tick, (consumer,), priority=10
        )

    def tick(self, consumer):
        """On the event loop: cheap, no I/O."""
        connection = consumer.connection
        if connection is None or not connection.connected or consumer.task_consumer is None:
            return  # cannot consume: the watchdog sees the tick go stale
        self.watchdog.observe(*self.held(consumer))

    @staticmethod
    def held(consumer):
        """How many slots are busy, and the delivery tags of every message the worker holds."""
        buckets = [b for b in consumer.task_buckets.values() if b is not None]
        waiting = [request for bucket in buckets for request, _ in list(bucket.contents)]
        held = [*state.reserved_requests, *state.scheduled_requests, *waiting]
        tags = [r.message.delivery_tag for r in held if r.message is not None]
        return len(state.reserved_requests) + len(waiting), tags

    def stop(self, consumer):
        super().stop(consumer)
        if self.watchdog is not None:
            self.watchdog.remember(self.held(consumer)[1])

    def shutdown(self, consumer):
        self.stop(consumer)
        if self.watchdog is not None:
            self.watchdog.stopping = True
        Path(settings.CELERY_HEARTBEAT_FILE).unlink(missing_ok=True)


class Watchdog(threading.Thread):
    """Judges progress off the event loop, with its own broker connection and bounded I/O."""

    def __init__(self, consumer, queues):
        super().__init__(name="liveness-watchdog", daemon=True)
        self.app = consumer.app
        self.concurrency = getattr(consumer.pool, "limit", None) or self.app.conf.worker_concurrency
        self.interval = settings.CELERY_HEARTBEAT_INTERVAL
        self.stall_seconds = settings.CELERY_WORKER_STALL_SECONDS
        self.stopping = False
        self.started = time.monotonic()
        self.last_tick = None
        self.queues = queues
        self.busy = 0
        self.tags: list[str] = []
        self.held_before_reconnect: set[str] = set()
        self.to_release: set[str] = set()
        self.broker = BrokerProbe(self.app)
        self.stalled_since = None
        self.exiting = False

    def observe(self, busy, tags):
        self.last_tick, self.busy, self.tags = time.monotonic(), busy, tags
        self.held_before_reconnect = set(tags)

    def remember(self, tags):
        """The consumer stops (connection lost): what it held then, on top of the last tick."""
        self.held_before_reconnect.update(tags)

    def release_leases(self):
        """Called when the consumer reconnects: hand every message held before back."""
        cancelled = set(CANCELLED_ON_CONNECTION_LOSS)
        CANCELLED_ON_CONNECTION_LOSS.difference_update(cancelled)
        self.to_release = self.held_before_reconnect | cancelled
        self.held_before_reconnect = set()

    def run(self):
        while not self.stopping:
            time.sleep(self.interval)
            try:
                self.check()
            except Exception:  # the watchdog itself must never die
                logger.exception("liveness check failed")

    def check(self):
        if self.stopping or state.should_stop is not None or state.should_terminate is not None:
            return
        now = time.monotonic()
        gate = DatabaseGate.current
        gated = gate is not None and gate.is_closed
        tick_age = now - (self.last_tick or self.started)
        loop_ok = tick_age <= max(3 * self.interval, 5)
        if self.to_release:
            released, self.to_release = self.to_release, set()
            self.broker.renew_leases(released, at=0)
        if loop_ok and self.tags:
            self.broker.renew_leases(self.tags)
        if gated:
            reason = None  # waiting for the database: a restart would not help
        elif not loop_ok and not self.broker.reachable(self.queues):
            # The broker is down or cut off: the consumer reconnects by itself once it is back,
            # and a new worker would wait the same. The clock starts when the broker answers.
            self.stalled_since = None
            return
        elif not loop_ok:
            reason = f"the consumer has not ticked for {tick_age:.0f}s"
        else:
            depth = self.broker.depth(self.queues)
            hungry = self.busy < self.concurrency
            reason = (
                f"{depth} messages wait in {','.join(self.queues)} while "
                f"{self.concurrency - self.busy} of {self.concurrency} slots are free"
                if depth and hungry
                else None
            )
        if reason is None:
            self.stalled_since = None
            if loop_ok:
                touch_heartbeat()
            return
        self.stalled_since = self.stalled_since or now
        stalled_for = now - self.stalled_since
        if stalled_for < self.stall_seconds:
            return
        self.exit(f"stalled for {stalled_for:.0f}s: {reason}", warm=loop_ok)

    def exit(self, reason, warm):
        if self.exiting:
            return
        self.exiting = True
        if warm:
            logger.critical("worker makes no progress, restarting (warm shutdown): %s", reason)
            os.kill(os.getpid(), signal.SIGTERM)
            # Running tasks get their hard limit; then nothing is left to wait for.
            time.sleep(
                settings.CELERY_TASK_TIME_LIMIT + settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT + 15
            )
        logger.critical("worker makes no progress, exiting at once: %s", reason)
        for handler in logging.getLogger().handlers:
            handler.flush()
        # The pool processes too; then this process, should it be a namespace's PID 1, which
        # ignores a SIGKILL sent from inside the namespace.
        os.killpg(os.getpgid(0), signal.SIGKILL)
        os._exit(70)


class BrokerProbe:
    """A broker connection of the watchdog's own, with short timeouts, never the consumer's."""

    def __init__(self, app):
        self.app = app
        self.url = app.conf.broker_url
        self.scheme = urlsplit(self.url).scheme
        options = app.conf.broker_transport_options or {}
        self.unacked_index_key = options.get("unacked_index_key", "unacked_index")
        self.timeout = settings.BROKER_TIMEOUT + 3
        self._redis = None
        self._amqp = None

    @property
    def is_redis(self) -> bool:
        return self.scheme in ("redis", "rediss")

    @property
    def is_sqs(self) -> bool:
        return self.scheme == "sqs"

    def _client(self):
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return self._redis

    def depth(self, queues) -> int:
        """Messages waiting in these queues; 0 when the broker cannot say."""
        try:
            if self.is_redis:
                names = [
                    name
                    for queue in queues
                    for name in (
                        queue,
                        *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS),
                    )
                ]
                pipe = self._client().pipeline(transaction=False)
                for name in names:
                    pipe.llen(name)
                return sum(pipe.execute())
            return self._amqp_depth(queues)
        except Exception as exc:
            logger.info("liveness: broker depth unavailable: %s", exc)
            self.close()
            return 0

    def _amqp_depth(self, queues) -> int:
        if self._amqp is None:
            self._amqp = self.app.connection_for_read()
            self._amqp.ensure_connection(max_retries=1, timeout=self.timeout)
        channel = self._amqp.default_channel
        return sum(channel.queue_declare(queue=q, passive=True).message_count for q in queues)

    def reachable(self, queues=()) -> bool:
        try:
            if self.is_redis:
                return bool(self._client().ping())
            # SQS has no connection to test: reading a queue's attributes is the probe.
            self._amqp_depth(list(queues)[:1] if self.is_sqs else [])
            return True
        except Exception:
            self.close()
            return False

    def renew_leases(self, tags, at=None) -> None:
        """Redis: mark every held message as delivered now (XX: never revive an acked one).
        at=0 releases them: the next restore sweep puts them back in their queue."""
        if not self.is_redis:
            # RabbitMQ redelivers as soon as the connection closes; an SQS queue's visibility
            # timeout exceeds the hard time limit (config/checks.py), with no renewal.
            return
        try:
            now = time.time() if at is None else at
            pipe = self._client().pipeline(transaction=False)
            for tag in tags:
                pipe.zadd(self.unacked_index_key, {tag: now}, xx=True)
            pipe.execute()
        except Exception as exc:
            logger.warning("liveness: could not renew %d leases: %s", len(tags), exc)
            self.close()

    def close(self):
        for conn in (self._redis, self._amqp):
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # noqa: S110 - closing a broken connection
                pass
        self._redis = self._amqp = None
