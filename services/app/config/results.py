"""The result backend: django-celery-results' database backend, made safe for database outages.

Three things the stock backend gets wrong when Postgres blips:

1. **A failed write loses the task.** Celery treats a result or state write that raises as an
   internal error and acknowledges the message: the task is gone, and its id answers PENDING
   forever. Here a write that fails on a connection-level error is retried (a fresh connection
   each time) for up to CELERY_RESULT_WRITE_RETRY_SECONDS, within the task's soft time limit. If
   the database is still down, the write raises ResultNotRecorded, a Reject with requeue: the
   message goes back to its queue, and the worker stops consuming until the database answers
   again (config/worker.py). Errors raised by the task body are still ordinary failures.
2. **The worker's event loop writes to the database.** Celery's main process records expired,
   revoked, timed-out and lost tasks itself, on the event loop; a half-open connection then
   wedges consumption. Here those writes go to one background thread, which retries them for
   CELERY_RESULT_DEFERRED_RETRY_SECONDS, so the event loop never waits on the database.
3. **A late state overwrites a finished task.** Celery publishes a retry before it stores the
   RETRY state of the attempt that asked for it, so a fast retry can store SUCCESS first. And a
   redelivered message of a task that succeeded but could not be acknowledged (the broker went
   silent) is marked STARTED before the task runs, which hid the SUCCESS from the redelivery
   check (config/celery.py): the task ran twice. Here a state that is not final never replaces
   a final one, checked and written atomically (under the row's lock).
"""

import logging
import queue
import threading
import time

from celery import signals, states
from celery.exceptions import Reject
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django_celery_results.backends import DatabaseBackend

from .deadline import expired as request_deadline_expired

logger = logging.getLogger(__name__)


class ResultNotRecorded(Reject):
    """The database stayed unreachable for the whole retry budget: requeue, do not acknowledge.

    A Reject, so Celery's own machinery puts the message back (acks_late tasks) instead of
    counting an internal error as done. Picklable: it crosses from the pool process to the
    worker's main process.
    """

    def __init__(self, reason=None, requeue=True):
        super().__init__(reason, requeue)


def is_connection_error(exc: BaseException) -> bool:
    """A database error worth retrying on a new connection: the server or the path to it is
    gone (OperationalError, InterfaceError), not a bad query or a constraint."""
    return isinstance(exc, OperationalError | InterfaceError)


# Per pool-process (per thread) state of the task being executed.
_task = threading.local()


@signals.task_prerun.connect
def _start_budget(task=None, **_kwargs):
    """Each task gets a fresh retry budget that ends before its soft time limit."""
    request = getattr(task, "request", None)
    hard, soft = (getattr(request, "timelimit", None) or (None, None))[:2]
    limit = soft or hard or task.soft_time_limit or task.time_limit
    limit = limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
    budget = min(settings.RESULT_WRITE_RETRY_SECONDS, max(float(limit) - 2.0, 1.0))
    _task.deadline = time.monotonic() + budget
    _task.unrecorded = None


@signals.task_postrun.connect
def _end_budget(**_kwargs):
    _task.deadline = None
    _task.unrecorded = None


class DeferredWriter(threading.Thread):
    """The one thread that makes the result writes of the worker's main process (the consumer).
    A daemon: a write blocked on a dead connection never holds up the worker's exit."""

    def __init__(self):
        super().__init__(name="result-writer", daemon=True)
        self.writes: queue.Queue = queue.Queue()

    def submit(self, method, *args, **kwargs):
        self.writes.put((method, args, kwargs))

    def run(self):
        while True:
            method, args, kwargs = self.writes.get()
            _task.deadline = time.monotonic() + settings.RESULT_DEFERRED_RETRY_SECONDS
            _task.unrecorded = None
            try:
                method(*args, **kwargs)
            except Exception:
                logger.exception("deferred result write failed: %s%r", method.__name__, args[:1])
            finally:
                _task.deadline = None


# Set in the worker's main process only: web, beat and the pool processes write inline.
_deferred: DeferredWriter | None = None


@signals.worker_init.connect
def _defer_main_process_writes(**_kwargs):
    global _deferred
    _deferred = DeferredWriter()
    _deferred.start()


@signals.worker_process_init.connect
def _write_inline_in_pool_processes(**_kwargs):
    global _deferred
    _deferred = None  # a forked pool process inherits the object, not the thread


def run_off_loop(function, timeout: float, default):
    """Run a read for the worker's main process in a daemon thread; stop waiting after timeout."""
    if _deferred is None:
        return function()
    outcome = {}

    def read():
        try:
            outcome["value"] = function()
        except Exception:  # the caller's default stands for any failure
            outcome["value"] = default

    reader = threading.Thread(target=read, name="result-reader", daemon=True)
    reader.start()
    reader.join(timeout)
    return outcome.get("value", default)


class RecordingBackend(DatabaseBackend):
    def _ensure_retryable(self, func, *args, fallback_exc=None, fallback_msg=None, **kwargs):
        """Retry connection-level errors until the budget runs out, on a new connection each time.

        Replaces Celery's count-based loop (result_backend_always_retry): the budget here is
        time, bounded by the task's soft limit, which is what decides whether a retry can still
        finish in time.
        """
        kwargs.pop("max_retries", None)
        deadline = getattr(_task, "deadline", None)
        if deadline is not None and getattr(_task, "unrecorded", None):
            raise ResultNotRecorded(_task.unrecorded)  # already failed once in this task
        attempt = 0
        while True:
            try:
                return func(*args, **kwargs)
            except DatabaseError as exc:
                if not is_connection_error(exc):
                    raise
                close_broken_connections()
                if deadline is None:
                    # Outside a task (web, beat, the consumer's reads): one retry on a fresh
                    # connection, for one the server dropped; callers answer 503 or log.
                    if attempt or request_deadline_expired():
                        raise
                    attempt = 1
                    continue
                attempt += 1
                pause = min(0.2 * 2**attempt, 5.0)
                if time.monotonic() + pause > deadline:
                    reason = f"database unreachable after {attempt} attempts: {exc}".strip()
                    _task.unrecorded = reason
                    logger.error("result not recorded, task requeued: %s", reason)
                    raise ResultNotRecorded(reason) from exc
                logger.warning("database unreachable (%s); retry %d in %.1fs", exc, attempt, pause)
                time.sleep(pause)

    def store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        try:
            return super().store_result(task_id, result, state, traceback, request, **kwargs)
        except ResultNotRecorded as exc:
            # A RETRY that was not recorded: the retry message is already published, so the
            # original must be acknowledged, not requeued as well.
            if state == states.RETRY:
                exc.requeue = False
            raise

    def on_chord_part_return(self, request, state, result, **kwargs):
        parent = super().on_chord_part_return
        return self._ensure_retryable(parent, request, state, result, **kwargs)

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status in states.READY_STATES:
            return super()._store_result(task_id, result, status, traceback, request, using)
        # A state that is not final (STARTED, RETRY, PROGRESS) never overwrites a final one.
        # Check and write under the row's lock (the row made first if missing), so a SUCCESS
        # written at the same moment lands either before the check (this write is dropped) or
        # after this write (and replaces it).
        db = using or router.db_for_write(self.TaskModel)
        rows = self.TaskModel._default_manager.db_manager(db)
        with transaction.atomic(using=db):
            current = rows.select_for_update().filter(task_id=task_id).values_list("status")
            found = current.first()
            if found is None:
                rows.bulk_create([self.TaskModel(task_id=task_id)], ignore_conflicts=True)
                found = current.first()
            if found is not None and found[0] in states.READY_STATES:
                return result
            return super()._store_result(task_id, result, status, traceback, request, db)

    # The worker's main process records expired, revoked, timed-out and lost tasks. Off the
    # event loop: a blocked database must never stop the worker from consuming.
    def mark_as_failure(self, *args, **kwargs):
        return self._maybe_deferred(super().mark_as_failure, *args, **kwargs)

    def mark_as_revoked(self, *args, **kwargs):
        return self._maybe_deferred(super().mark_as_revoked, *args, **kwargs)

    def mark_as_retry(self, *args, **kwargs):
        return self._maybe_deferred(super().mark_as_retry, *args, **kwargs)

    def _maybe_deferred(self, method, *args, **kwargs):
        return write_off_loop(method, *args, **kwargs)


def write_off_loop(method, *args, **kwargs):
    """In the worker's main process: hand the write to the DeferredWriter; elsewhere: write."""
    if _deferred is None or threading.current_thread() is not threading.main_thread():
        return method(*args, **kwargs)
    _deferred.submit(method, *args, **kwargs)
    return None


def close_broken_connections() -> None:
    """Drop this thread's database connections so the next attempt connects afresh."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except DatabaseError:
            pass
