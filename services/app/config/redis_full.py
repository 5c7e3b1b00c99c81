"""Redis at its memory limit (maxmemory with noeviction): what refuses, and what the worker does
when it refuses the record kombu keeps of a message it took."""

import logging

import redis.exceptions

logger = logging.getLogger(__name__)


def is_redis_full(exc: BaseException | None) -> bool:
    """Redis refusing writes at maxmemory with noeviction ("OOM command not allowed"). redis-py
    raises OutOfMemoryError; kombu re-raises it as OperationalError, so follow the chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def keep_working_at_the_limit() -> None:
    """kombu's Redis transport, made to work at maxmemory (noeviction) instead of stopping the
    worker ("Unrecoverable error: OutOfMemoryError") and losing what it held:

    - BRPOP still takes a message (it frees memory), but the write that records it as unacked
      is refused. The message then existed only in the exception. Now the worker keeps it in
      memory and runs it; with no unacked record to restore it from, it is lost only if this
      worker dies before acknowledging it.
    - An ack deletes that record in a MULTI, and Redis refuses every command queued in a MULTI
      at the limit, even a delete. The same deletes outside a MULTI are allowed.
    """
    from kombu.transport import redis as kombu_redis
    from kombu.transport import virtual

    qos = kombu_redis.QoS
    if getattr(qos, "works_at_the_limit", False):
        return
    record_unacked, acknowledge, reject = qos.append, qos.ack, qos.reject

    def append(self, message, delivery_tag):
        try:
            record_unacked(self, message, delivery_tag)
        except redis.exceptions.RedisError as exc:
            if not is_redis_full(exc):
                raise
            logger.error(
                "Redis at its memory limit refused the unacked record of message %s: running it "
                "without one (it is lost only if this worker dies before acknowledging it)",
                delivery_tag,
            )
            virtual.QoS.append(self, message, delivery_tag)  # the worker's own bookkeeping

    def forget_outside_multi(self, delivery_tag):
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            self._remove_from_indices(delivery_tag, pipe).execute()
        virtual.QoS.ack(self, delivery_tag)

    def ack(self, delivery_tag):
        try:
            acknowledge(self, delivery_tag)
        except redis.exceptions.RedisError as exc:
            if not is_redis_full(exc):
                raise
            forget_outside_multi(self, delivery_tag)

    def reject_(self, delivery_tag, requeue=False):
        try:
            reject(self, delivery_tag, requeue=requeue)
        except redis.exceptions.RedisError as exc:
            if requeue or not is_redis_full(exc):
                raise  # a requeue is a write: it waits for the visibility timeout instead
            forget_outside_multi(self, delivery_tag)

    qos.append, qos.ack, qos.reject = append, ack, reject_
    qos.works_at_the_limit = True
