"""Beat's scheduler: django-celery-beat's DatabaseScheduler plus a lease and liveness.

One beat sends. Each beat process tries to hold a lease in Postgres (jobs.BeatLease); the holder
sends periodic tasks and renews the lease every third of CELERY_BEAT_LEASE_SECONDS, any other beat
stands by and tries again every couple of seconds. A holder that dies or hangs stops renewing,
and a standby takes over once the lease expires: within about one lease period. A holder that
cannot renew stops sending before its lease can expire on the database's clock, so two beats
never send at once. On takeover the new holder re-reads the schedule, with the last run times
the old one saved (CELERY_BEAT_SYNC_EVERY=1: saved after every sent task).

SIGTERM or SIGINT never interrupts a database or broker call: Celery's own handler saves the
schedule from inside the signal handler, i.e. possibly in the middle of the tick's query or
publish on the same connection, and psycopg's connection lock is not reentrant, so beat hung
there until it was killed. Here a signal that arrives during a tick or a save lets it finish and
stops right after; one that arrives between ticks stops at once. Either way the schedule is saved
and the lease released once, on the way out.

Every tick, holder or standby, touches the heartbeat file (`bin/heartbeat-check` reads its age).
A watchdog thread exits beat when no tick has happened for CELERY_WORKER_STALL_SECONDS: a beat
blocked on a dead connection would otherwise stay wedged under Compose, which never restarts an
unhealthy container; its restart policy (or the kubelet) starts a fresh one.
"""

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid

from django.conf import settings
from django.db import DatabaseError, connection
from django_celery_beat.schedulers import DatabaseScheduler

from .worker import touch_heartbeat

logger = logging.getLogger("celery.beat.liveness")


class Lease:
    """A lease on the right to send, taken and renewed by one conditional write."""

    # Take it if free or expired, renew it if ours; a row comes back only if we hold it.
    # Expiry is on the database's clock, the same for every beat wherever it runs.
    CLAIM = """
        INSERT INTO jobs_beatlease (name, holder, expires_at)
        VALUES (%s, %s, now() + make_interval(secs => %s))
        ON CONFLICT (name) DO UPDATE
            SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
            WHERE jobs_beatlease.holder = EXCLUDED.holder OR jobs_beatlease.expires_at < now()
        RETURNING holder
    """
    STANDBY_RETRY = 2.0  # seconds between a standby's attempts

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.valid_until = 0.0  # monotonic; past it, we may not send
        self.next_attempt = 0.0

    def held(self) -> bool:
        """Whether this process may send now; renews (or tries to take) the lease when due."""
        now = time.monotonic()
        if now >= self.next_attempt:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(self.CLAIM, [self.name, self.holder, self.seconds])
                    ours = cursor.fetchone() is not None
            except DatabaseError as exc:
                # Unknown: keep sending only while the lease we had is surely still ours.
                logger.warning("beat lease: could not renew (%s)", exc)
                connection.close()
                self.next_attempt = now + self.STANDBY_RETRY
            else:
                # Counted from before the write: it ends before the database's expiry does.
                self.valid_until = now + self.seconds - 1.0 if ours else 0.0
                self.next_attempt = now + (self.seconds / 3 if ours else self.STANDBY_RETRY)
        return time.monotonic() < self.valid_until

    def release(self) -> None:
        """On a clean stop: a standby takes over at once instead of after the lease runs out.
        Also when our own view of it has lapsed (a tick blocked past it): the row may still
        name us until its expiry, and the holder condition never deletes another beat's."""
        if not self.valid_until:  # never held, or another beat's
            return
        self.valid_until = 0.0
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM jobs_beatlease WHERE name = %s AND holder = %s",
                    [self.name, self.holder],
                )
        except DatabaseError as exc:
            logger.warning("beat lease: could not release (%s); it expires by itself", exc)


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """Sends only while it holds the lease; touches the heartbeat file on every tick (at most
    every beat_max_loop_interval, 5 s)."""

    _busy = 0  # > 0 inside a tick, a save or the close: a stop signal waits for it
    _stop_requested = False

    def setup_schedule(self):
        super().setup_schedule()
        self.lease = Lease("beat", settings.CELERY_BEAT_LEASE_SECONDS)
        self.sending: bool | None = None  # not known until the first tick
        self.last_tick = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            # Replaces the handler Celery installed just before (apps/beat.py install_sync_handler).
            signal.signal(signal.SIGTERM, self._on_stop_signal)
            signal.signal(signal.SIGINT, self._on_stop_signal)
        threading.Thread(target=self._watchdog, name="beat-watchdog", daemon=True).start()

    def _on_stop_signal(self, signum, frame):
        if self._busy:
            self._stop_requested = True  # the call in progress finishes first
        else:
            raise SystemExit()  # between ticks: beat's loop saves and closes on its way out

    @contextlib.contextmanager
    def _unbroken(self):
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy and self._stop_requested:
                self._stop_requested = False
                raise SystemExit()

    def sync(self):
        with self._unbroken():
            super().sync()

    def tick(self, *args, **kwargs):
        with self._unbroken():
            return self._tick(*args, **kwargs)

    def _tick(self, *args, **kwargs):
        if self.lease.held():
            if not self.sending:
                logger.info("beat lease taken (%s): sending periodic tasks", self.lease.holder)
                self.sending = True
                # Start from the schedule as saved, with the last runs of the previous holder.
                self._initial_read, self._heap = True, None
            interval = min(super().tick(*args, **kwargs), self.lease.seconds / 3)
        else:
            if self.sending is not False:
                logger.info("beat lease held by another beat: standing by (%s)", self.lease.holder)
            self.sending = False
            interval = Lease.STANDBY_RETRY
        self.last_tick = time.monotonic()
        touch_heartbeat()
        return interval

    def close(self):
        with self._unbroken():
            super().close()
            if getattr(self, "lease", None) is not None:
                self.lease.release()

    def _watchdog(self):
        limit = settings.CELERY_WORKER_STALL_SECONDS
        while True:
            time.sleep(settings.CELERY_HEARTBEAT_INTERVAL)
            stalled = time.monotonic() - self.last_tick
            if stalled > limit:
                logger.critical("beat has not ticked for %.0fs: exiting to be restarted", stalled)
                os.kill(os.getpid(), signal.SIGKILL)
