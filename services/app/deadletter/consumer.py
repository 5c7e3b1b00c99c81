"""The worker's consumer, keeping the messages it cannot run instead of dropping them.

Celery logs and rejects (or acknowledges) a message naming an unknown task, a body it cannot
decode and a content type it does not accept: on Redis the message is gone. Here each is written
to the dead-letter store first and then acknowledged (a rejection would make RabbitMQ
dead-letter it a second time). If the store cannot be written, the message is requeued and
consuming pauses until the database answers (config/worker.py's DatabaseGate): not kept, not
lost. Installed by CELERY_WORKER_CONSUMER.

Also declares RabbitMQ's dead-letter exchange and queue (deadletter/tasks.py), so the task
queues' x-dead-letter-exchange never points at nothing.
"""

import logging

from celery import bootsteps
from celery.exceptions import NotRegistered
from celery.utils.collections import AttributeDict
from celery.worker.consumer import Consumer

from .models import DeadLetter

logger = logging.getLogger(__name__)

# The store is written from the event loop, in a thread: past this it counts as down.
STORE_TIMEOUT = 5.0


class DeadLetteringConsumer(Consumer):
    def on_unknown_message(self, body, message):
        self._keep(message, DeadLetter.Reason.UNDECODABLE, "not a Celery task message")

    def on_invalid_task(self, body, message, exc):
        self._keep(message, DeadLetter.Reason.UNDECODABLE, f"{type(exc).__name__}: {exc}")

    def on_decode_error(self, message, exc):
        self._keep(message, DeadLetter.Reason.UNDECODABLE, f"{type(exc).__name__}: {exc}")

    def on_unknown_task(self, body, message, exc):
        headers = message.headers or {}
        name = headers.get("task", "?")
        if not self._keep(message, DeadLetter.Reason.UNKNOWN_TASK, f"NotRegistered: {name!r}"):
            return
        if headers.get("id"):  # as Celery does: the caller sees FAILURE, not PENDING forever
            request = AttributeDict(
                name=name,
                chord=None,
                root_id=headers.get("root_id"),
                correlation_id=message.properties.get("correlation_id"),
                reply_to=message.properties.get("reply_to"),
                errbacks=None,
            )
            self.app.backend.mark_as_failure(headers["id"], NotRegistered(name), request=request)

    def _keep(self, message, reason, error) -> bool:
        """Store, then acknowledge; on failure requeue and pause. True if stored."""
        from config.results import run_off_loop
        from config.worker import DatabaseGate

        from .store import record_message

        def store():
            record_message(reason, message, error)
            return True

        if run_off_loop(store, timeout=STORE_TIMEOUT, default=False):
            message.ack_log_error(logger, self.connection_errors)
            return True
        logger.error("dead letter not stored (database unreachable), message requeued: %s", error)
        message.reject_log_error(logger, self.connection_errors, requeue=True)
        if DatabaseGate.current is not None:
            DatabaseGate.current.pause("dead-letter store unreachable")
        return False


class DeadLetterQueue(bootsteps.StartStopStep):
    """Consumer step (RabbitMQ): declare the dead-letter exchange and queue on each connect."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, consumer):
        from .tasks import declare_dead_letter_queue

        declare_dead_letter_queue(consumer.connection)
