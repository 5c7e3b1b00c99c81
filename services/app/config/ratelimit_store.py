"""The rate-limit store: a Redis shared by every gunicorn worker and replica, with this process's
memory standing in while that Redis does not answer.

On a Redis stack the rate-limit store is the broker's Redis. Failing every rate-limited request
while it restarts would turn a broker outage into a signup outage, although signup and password
reset queue their mail through the outbox (Postgres) and need no broker. So while Redis is
unreachable the counts live in each process: limits still hold, only looser (each process
counts on its own) until Redis answers again, and never off. A Redis that answers but refuses
(maxmemory) is not an outage: that still fails the request (503 redis_full).
"""

import logging
import time

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisWithLocalFallback(RedisCache):
    # After a failure, counts stay local this long before Redis is tried again, so a silent
    # Redis costs one request its timeout, not every request.
    RETRY_REDIS_AFTER = 5.0

    def __init__(self, server, params):
        super().__init__(server, params)
        self._local = LocMemCache("ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
        self._redis_back_at = 0.0

    def _call(self, method: str, *args, **kwargs):
        if time.monotonic() >= self._redis_back_at:
            try:
                return getattr(super(), method)(*args, **kwargs)
            except UNREACHABLE as exc:
                self._redis_back_at = time.monotonic() + self.RETRY_REDIS_AFTER
                logger.warning(
                    "rate-limit store unreachable (%s): counting in this process for %.0f s",
                    exc,
                    self.RETRY_REDIS_AFTER,
                )
        return getattr(self._local, method)(*args, **kwargs)

    # What django-ratelimit uses (add, incr, get), and the rest of the basic cache API.
    def add(self, *args, **kwargs):
        return self._call("add", *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._call("incr", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._call("set", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._call("delete", *args, **kwargs)
