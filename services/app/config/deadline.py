"""A client-side deadline for each database call of a request handler.

Postgres bounds what it runs (statement_timeout) and TCP bounds a dead peer (keepalives,
tcp_user_timeout), but nothing bounds a server that is alive and silent: a frozen or partitioned
host whose kernel still acknowledges packets. A request would then hang until gunicorn kills
its worker. A database call (a query, a commit or rollback, a health check) that runs past the
deadline has its socket shut down by a watcher thread: the blocked read returns at once,
psycopg raises OperationalError, and the API answers 503.

Only time spent in the database counts: a request slowed by the broker, the rate-limit store or
a busy CPU is not failed as "database unavailable".
"""

import contextlib
import os
import socket
import threading
import time

_limits: dict[int, float] = {}  # thread -> seconds, while in database_deadline
_calls: dict[int, tuple[float, object]] = {}  # thread -> (ends at, connection wrapper) per call
_expired: set[int] = set()  # threads whose call ran past its deadline, while in database_deadline
_watcher_lock = threading.Lock()
_watcher: threading.Thread | None = None


def expired() -> bool:
    """Has a database call of this thread run past its deadline? Then retrying on a new
    connection only adds a wait."""
    return threading.get_ident() in _expired


def _shut_down(wrapper) -> None:
    pgconn = getattr(wrapper.connection, "pgconn", None)  # psycopg 3, once connected
    fd = getattr(pgconn, "socket", -1) if pgconn is not None else -1
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _watch() -> None:
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        for owner, (ends_at, wrapper) in list(_calls.items()):
            if now >= ends_at and _calls.get(owner, (None, None))[1] is wrapper:
                _expired.add(owner)
                _shut_down(wrapper)


def _start_watcher() -> None:
    global _watcher
    with _watcher_lock:
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch, name="database-deadline", daemon=True)
            _watcher.start()


@contextlib.contextmanager
def database_deadline(seconds: float):
    """Within this block, each database call of this thread may take `seconds` at most."""
    owner = threading.get_ident()
    _start_watcher()
    _limits[owner] = seconds
    try:
        yield
    finally:
        _limits.pop(owner, None)
        _calls.pop(owner, None)
        _expired.discard(owner)


@contextlib.contextmanager
def bounded_call(wrapper):
    """One database call of `wrapper` (a Django connection): bounded when the thread is in a
    database_deadline block, untouched otherwise."""
    owner = threading.get_ident()
    seconds = _limits.get(owner)
    if seconds is None or owner in _calls:  # no deadline, or already inside a bounded call
        yield
        return
    _calls[owner] = (time.monotonic() + seconds, wrapper)
    try:
        yield
    finally:
        _calls.pop(owner, None)
