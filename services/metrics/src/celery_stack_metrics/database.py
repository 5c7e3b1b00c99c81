"""Optional gauges read from the app's database (DATABASE_URL): the transactional outbox's
backlog and age (services/app/jobs/outbox.py) and the dead-letter store's size per reason.

Polled in a thread of its own, so a slow or dead database never delays the broker gauges. Every
statement is bounded (connect_timeout, statement_timeout); a table that does not exist yet (an
older app, the dead-letter app not installed) just exports nothing for it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import psycopg
from psycopg import errors

from .logs import poll_failed

log = logging.getLogger("celery_stack_metrics")

# now() - min(created_at) on the database's clock: no skew between hosts. 0 when nothing waits.
OUTBOX_QUERY = """
    SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
    FROM jobs_outbox WHERE published_at IS NULL
"""
DEAD_LETTER_QUERY = "SELECT reason, count(*) FROM deadletter_deadletter GROUP BY reason"


@dataclass
class DatabaseSample:
    outbox: tuple[int, float] | None = None  # (pending rows, oldest pending age in seconds)
    dead_letters: dict[str, int] | None = None  # per reason


@dataclass
class DatabaseSnapshot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: bool = False
    sample: DatabaseSample = field(default_factory=DatabaseSample)
    last_error: str | None = None


class DatabasePoller:
    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self.conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(
                self.url,
                autocommit=True,  # a failed statement (missing table) does not poison the next
                connect_timeout=max(1, round(self.timeout)),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
                application_name="celery-stack-metrics",
            )
        return self.conn

    def _optional(self, query: str):
        """The query's rows, or None when its table does not exist."""
        try:
            return self._connect().execute(query).fetchall()
        except errors.UndefinedTable:
            return None

    def poll(self) -> DatabaseSample:
        try:
            outbox = self._optional(OUTBOX_QUERY)
            dead = self._optional(DEAD_LETTER_QUERY)
        except Exception:
            self.close()  # a broken connection: a fresh one next time
            raise
        return DatabaseSample(
            outbox=(int(outbox[0][0]), float(outbox[0][1])) if outbox else None,
            dead_letters={str(reason): int(n) for reason, n in dead} if dead is not None else None,
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # does not raise, even on a broken connection
            self.conn = None


def poll_loop(poller: DatabasePoller, snap: DatabaseSnapshot, interval: float, stop: threading.Event):
    failures = 0
    while not stop.is_set():
        try:
            sample = poller.poll()
        except Exception as exc:  # noqa: BLE001 - any database failure: log, back off, retry
            failures += 1
            with snap.lock:
                snap.ok, snap.sample = False, DatabaseSample()
                snap.last_error = f"{type(exc).__name__}: {exc}"
            stop.wait(poll_failed(log, "database", snap.last_error, failures, interval))
            continue
        with snap.lock:
            if not snap.ok:
                log.info("database poll succeeded")
            snap.ok, snap.sample, snap.last_error = True, sample, None
        failures = 0
        stop.wait(interval)
    poller.close()

