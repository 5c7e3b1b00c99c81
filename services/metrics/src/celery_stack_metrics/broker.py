"""Reading ready-message counts (and, on Redis, the oldest message's age) from the broker."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("celery_stack_metrics.broker")

REDIS_SCHEMES = {"redis", "rediss", "sentinel"}
AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}
SQS_SCHEMES = {"sqs"}


@dataclass
class QueueSample:
    depth: int
    # Seconds since the oldest waiting message was published, 0 for an empty queue,
    # None when it cannot be known (amqp, sqs, or no readable published_at header).
    oldest_age: float | None


def redis_sublists(queue: str, sep: str, steps) -> list[str]:
    """The list keys kombu's Redis transport uses for one queue: base list + priority sub-lists."""
    keys: list[str] = []
    for step in steps:
        key = f"{queue}{sep}{step}" if step else queue
        if key not in keys:
            keys.append(key)
    if queue not in keys:
        keys.insert(0, queue)
    return keys


def published_at(raw) -> float | None:
    """headers.published_at of a kombu JSON envelope as stored in a Redis list."""
    if raw is None:
        return None
    try:
        envelope = json.loads(raw)
        value = envelope.get("headers", {}).get("published_at")
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


class BrokerPoller:
    """Owns one broker connection; `poll()` returns {queue: QueueSample} or raises."""

    def __init__(self, app, queues):
        self.app = app
        self.queues = tuple(queues)
        self.conn = None
        self.kind = None
        # Redis only: (used_memory, maxmemory) in bytes from the last poll; maxmemory 0 = none.
        self.memory: tuple[int, int] | None = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:
                log.debug("error while closing broker connection", exc_info=True)
        self.conn = None

    def _connect(self):
        if self.conn is None:
            conn = self.app.connection_for_read()
            try:
                conn.ensure_connection(max_retries=1)
            except Exception:
                conn.release()
                raise
            self.conn = conn
            self.kind = conn.transport.driver_type  # 'redis' (also sentinel) or 'amqp'
        return self.conn

    def poll(self) -> dict[str, QueueSample]:
        try:
            conn = self._connect()
            if self.kind == "redis":
                return self._poll_redis(conn)
            if self.kind == "amqp":
                return self._poll_amqp(conn)
            if self.kind == "sqs":
                return self._poll_sqs(conn)
            raise RuntimeError(f"unsupported broker transport {self.kind!r} (use redis, amqp or sqs)")
        except Exception:
            self.close()
            raise

    def _poll_redis(self, conn) -> dict[str, QueueSample]:
        channel = conn.default_channel
        sep = channel.sep
        steps = list(channel.priority_steps)
        now = time.time()
        plan = [(q, redis_sublists(q, sep, steps)) for q in self.queues]
        with channel.conn_or_acquire() as client:
            with client.pipeline(transaction=False) as pipe:
                for _, keys in plan:
                    for key in keys:
                        pipe.llen(key)
                        pipe.lindex(key, -1)
                # At maxmemory with noeviction Redis refuses new tasks: alert before that.
                pipe.info("memory")
                replies = pipe.execute()
        memory = replies.pop()
        self.memory = (int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0)))
        out: dict[str, QueueSample] = {}
        i = 0
        for queue, keys in plan:
            depth = 0
            oldest = None
            for _ in keys:
                length, tail = replies[i], replies[i + 1]
                i += 2
                depth += int(length or 0)
                if length:
                    ts = published_at(tail)
                    if ts is not None and (oldest is None or ts < oldest):
                        oldest = ts
            if depth == 0:
                age = 0.0
            elif oldest is None:
                age = None  # messages without a published_at header: unknown, not zero
            else:
                age = max(0.0, now - oldest)
            out[queue] = QueueSample(depth=depth, oldest_age=age)
        return out

    def _poll_amqp(self, conn) -> dict[str, QueueSample]:
        from amqp.exceptions import NotFound

        out: dict[str, QueueSample] = {}
        for queue in self.queues:
            channel = conn.channel()
            try:
                _, count, _consumers = channel.queue_declare(queue=queue, passive=True)
                out[queue] = QueueSample(depth=int(count), oldest_age=None)
            except NotFound:
                # A queue nobody declared yet holds no messages.
                out[queue] = QueueSample(depth=0, oldest_age=None)
            finally:
                try:
                    channel.close()
                except Exception:  # the channel may already be closed by the broker
                    log.debug("error while closing an amqp channel", exc_info=True)
        return out

    def _poll_sqs(self, conn) -> dict[str, QueueSample]:
        """Amazon SQS: the queue attributes. The backlog is what waits (ApproximateNumberOfMessages)
        plus what workers received and have not acknowledged yet (ApproximateNumberOfMessagesNotVisible);
        countdown messages still delayed in SQS are not counted. No oldest age."""
        from kombu.transport.SQS import DoesNotExistQueueException  # kombu 5.5 and 5.7 alike

        channel = conn.default_channel
        out: dict[str, QueueSample] = {}
        for queue in self.queues:
            try:
                url = channel._resolve_queue_url(queue)  # never creates a queue
            except DoesNotExistQueueException:
                out[queue] = QueueSample(depth=0, oldest_age=None)  # nobody declared it yet
                continue
            client = channel.sqs(queue=channel.canonical_queue_name(queue))
            attributes = client.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            depth = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
            out[queue] = QueueSample(depth=depth, oldest_age=None)
        return out
