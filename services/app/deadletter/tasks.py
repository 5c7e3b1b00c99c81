"""RabbitMQ's dead letters, moved into the store.

Every task queue names the exchange DEAD_LETTER_EXCHANGE as its x-dead-letter-exchange
(config/pools.py): a message the broker rejects without requeue, lets expire or drops over a
length limit goes to the queue of the same name. Beat runs collect_dead_lettered every 30 s
(migration 0002): a periodic task rather than a consumer in every worker, because one short
drain needs no step, no connection and no failure handling of its own in each worker, and 30 s
is soon enough for what an operator reads. A message is acknowledged only once its entry is
committed: a crash in between keeps it twice, never zero times.
"""

from celery import shared_task
from kombu import Exchange, Queue

from config.pools import DEAD_LETTER_EXCHANGE

from .models import DeadLetter


def dead_letter_queue() -> Queue:
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
    return Queue(DEAD_LETTER_EXCHANGE, exchange, durable=True)


def declare_dead_letter_queue(connection) -> Queue | None:
    """Declare it on an AMQP connection; Redis has no dead-lettering (None)."""
    if connection.transport.driver_type != "amqp":
        return None
    queue = dead_letter_queue()(connection.default_channel)
    queue.declare()
    return queue


@shared_task
def collect_dead_lettered(limit: int = 1000) -> int:
    """Move up to `limit` messages from RabbitMQ's dead-letter queue into the store."""
    from config.celery import app

    from .store import record_message

    moved = 0
    with app.connection_for_read() as connection:
        queue = declare_dead_letter_queue(connection)
        while queue is not None and moved < limit:
            message = queue.get(no_ack=False)
            if message is None:
                break
            headers = message.headers or {}
            reason = headers.get("x-first-death-reason", "dead-lettered")
            record_message(DeadLetter.Reason.BROKER_DEAD_LETTERED, message, f"RabbitMQ: {reason}")
            message.ack()
            moved += 1
    return moved
