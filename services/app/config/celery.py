"""The Celery application. Settings live in config/settings.py under the CELERY_ namespace."""

import logging.config
import os
import time

from celery import Celery, signals
from celery.contrib.django.task import DjangoTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class DeliveryLimitReached(Exception):
    """A task's message came back more often than its max_deliveries: it is not run again."""


class RecordingTask(DjangoTask):
    """Celery's Django task (delay_on_commit), whose request requeues a result it could not
    record (config/worker.py), which does not run twice what already succeeded nor a second
    copy of an outbox row, and which is delivered at most max_deliveries times (a task option;
    default CELERY_TASK_MAX_DELIVERIES)."""

    Request = "config.worker:RecordingRequest"
    max_deliveries: int | None = None

    def apply_async(self, *args, **options):
        # RabbitMQ confirms every publish (CELERY_BROKER_TRANSPORT_OPTIONS): wait that long at
        # most for the confirm, so a silent broker fails the publish (the API answers 503)
        # instead of hanging it.
        from django.conf import settings

        options.setdefault("confirm_timeout", settings.BROKER_CONFIRM_TIMEOUT)
        if settings.BROKER_IS_SQS:
            from . import sqs

            # Refused here, before anything is published (the API answers 413).
            task_args = options.get("args", args[0] if args else None)
            task_kwargs = options.get("kwargs", args[1] if len(args) > 1 else None)
            sqs.check_message_size(task_args, task_kwargs)
            # A countdown waits in SQS, not unacked in a worker (config/sqs.py).
            delay = sqs.delay_seconds(options.get("countdown"), options.get("eta"))
            if delay:
                options["delay_seconds"] = delay
        return super().apply_async(*args, **options)

    def __call__(self, *args, **kwargs):
        request = self.request
        if request.id is None:  # called as a plain function, not by a worker
            return super().__call__(*args, **kwargs)
        from celery.exceptions import Ignore

        # A second published copy of a transactional-outbox row (jobs/outbox.py).
        from jobs.outbox import is_duplicate

        if is_duplicate(request):
            logging.getLogger(__name__).warning(
                "%s[%s] published twice by the outbox: this copy not run", self.name, request.id
            )
            raise Ignore()
        # RabbitMQ flags a redelivery in delivery_info; kombu's Redis restore in a header too.
        redelivered = (request.delivery_info or {}).get("redelivered") or getattr(
            request, "redelivered", False
        )
        if not (self.acks_late and redelivered):
            # The worker already pushed this request (Task.__call__ would push an empty one).
            return self.run(*args, **kwargs)
        # A redelivered message may belong to a run that finished but could not acknowledge
        # (the broker connection dropped first). Its SUCCESS is recorded: do not run it again.
        # One result read, for redelivered messages only.
        from celery import states

        if self.backend.get_task_meta(request.id, cache=False)["status"] == states.SUCCESS:
            logging.getLogger(__name__).warning(
                "%s[%s] redelivered after it succeeded: not run again", self.name, request.id
            )
            raise Ignore()
        # A redelivery: its worker (or pool process) died, or the broker connection dropped,
        # while it ran. Counted in Postgres, where the count outlives the worker; a task that
        # kills its process every time ends as FAILURE and a dead letter (config/worker.py).
        from django.conf import settings

        from deadletter.store import count_delivery, forget_deliveries

        limit = self.max_deliveries or settings.TASK_MAX_DELIVERIES
        deliveries = self.backend._ensure_retryable(count_delivery, request.id)
        if deliveries > limit:
            self.backend._ensure_retryable(forget_deliveries, request.id)
            raise DeliveryLimitReached(f"worker lost {deliveries - 1} times")
        try:
            return self.run(*args, **kwargs)
        finally:  # it ended (a lost process never gets here): the count has done its work
            self.backend._ensure_retryable(forget_deliveries, request.id)


app = Celery("config", task_cls=RecordingTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**_kwargs):
    """Log through Django's LOGGING (JSON on stdout) instead of Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.before_task_publish.connect
def stamp_published_at(headers=None, **_kwargs):
    """Record when a message was published, so the oldest waiting message has an age."""
    if headers is not None:
        headers.setdefault("published_at", time.time())


@signals.celeryd_init.connect
def add_worker_steps(sender=None, instance=None, **_kwargs):
    """Liveness by progress, a pause while the database is down (config/worker.py), a worker
    that keeps working when Redis is at its memory limit (config/redis_full.py), RabbitMQ's
    dead-letter queue declared (deadletter/consumer.py), and on SQS the visibility timeout of
    the queues it consumes checked (config/checks.py)."""
    from celery.worker.consumer import heart
    from django.conf import settings

    from deadletter.consumer import DeadLetterQueue

    from . import results  # noqa: F401 - connects the result backend's worker signals
    from .redis_full import keep_working_at_the_limit
    from .worker import BoundedHeart, DatabaseGate, Liveness

    keep_working_at_the_limit()
    if settings.BROKER_IS_SQS:
        from .checks import check_sqs_queues

        queues = os.environ.get("CELERY_WORKER_QUEUES", "default")  # as bin/worker has it
        check_sqs_queues(app, [q.strip() for q in queues.split(",") if q.strip()])
    heart.heartbeat.Heart = BoundedHeart  # the consumer's Heart step builds this class
    app.steps["consumer"].add(DatabaseGate)
    app.steps["consumer"].add(DeadLetterQueue)
    app.steps["consumer"].add(Liveness)


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_db_connections(**_kwargs):
    """Treat each task as Django treats a request: reuse the connection until it is broken or older
    than CONN_MAX_AGE. (CELERY_DB_REUSE_MAX stops the fixup from closing it every time.)"""
    from django.db import close_old_connections

    close_old_connections()
