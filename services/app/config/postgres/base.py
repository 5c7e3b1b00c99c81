"""Django's PostgreSQL backend, with two changes to how a connection is opened:

- A connect refused, or whose host name was not resolved, is tried again for up to about 3 s:
  a Postgres restarting, or a resolver that misses lookups while it reloads (Podman's does when
  a container starts or stops; a lookup can then take its 2 s of resolver timeouts), would
  otherwise fail the request or the task write that happened to open a connection then. A
  connect that timed out (a silent server) is not retried: it already waited its timeout.
- Each query, commit, rollback and health check of a request handler is bounded by the
  request's database deadline (config/deadline.py); once a call ran past it, the request opens
  no new connection: a connect to a silent server would wait the whole connect timeout again.
"""

import logging
import time

import psycopg
from django.db.backends.postgresql import base

from config.deadline import bounded_call, expired

logger = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0)  # seconds before each further try
RETRY_WITHIN = 3.0  # seconds since the first try: no further try starts after this


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(self._bounded_execute)

    def _bounded_execute(self, execute, sql, params, many, context):
        with bounded_call(self):
            return execute(sql, params, many, context)

    def _commit(self):
        with bounded_call(self):
            return super()._commit()

    def _rollback(self):
        with bounded_call(self):
            return super()._rollback()

    def is_usable(self):
        with bounded_call(self):
            return super().is_usable()

    def get_new_connection(self, conn_params):
        first_try = time.monotonic()
        for delay in (*RETRY_DELAYS, None):
            if expired():
                raise psycopg.OperationalError("the request's database deadline has passed")
            try:
                return super().get_new_connection(conn_params)
            except psycopg.OperationalError as exc:
                timed_out = "timeout expired" in str(exc)
                if delay is None or timed_out or time.monotonic() - first_try > RETRY_WITHIN:
                    raise
                logger.warning("database connect failed, retrying in %.2fs: %s", delay, exc)
                time.sleep(delay)
        raise AssertionError("unreachable")
