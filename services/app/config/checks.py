"""Startup checks that refuse to run a configuration that loses or duplicates tasks."""

from urllib.parse import urlsplit

from .env import MissingSetting

VISIBILITY_TRANSPORTS = {"redis", "rediss", "sentinel"}
AMQP_TRANSPORTS = {"amqp", "amqps", "pyamqp"}


class UnsafeConfiguration(MissingSetting):
    """SystemExit, so that no signal handler or WSGI server swallows it."""


def longest_time_limit(app) -> tuple[float, str]:
    """The longest hard time limit any registered task can run for, and which task it is."""
    default = app.conf.task_time_limit
    longest, owner = 0.0, "CELERY_TASK_TIME_LIMIT"
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        limit = task.time_limit or default
        if not limit:
            raise UnsafeConfiguration(
                f"Task {name} has no hard time limit. Set CELERY_TASK_TIME_LIMIT or the task's "
                f"time_limit: a task without one can hold a worker slot forever."
            )
        if limit > longest:
            longest = float(limit)
            owner = name if task.time_limit else "CELERY_TASK_TIME_LIMIT"
    return longest, owner


def check_visibility_timeout(app, max_countdown: int) -> None:
    """A message unacked for longer than the visibility timeout is delivered again.

    Redis: a live worker renews the lease of every message it holds every
    CELERY_HEARTBEAT_INTERVAL (config/worker.py), so a held message is redelivered only when
    its worker is gone. The timeout must still exceed the longest hard time limit, so that a
    task whose lease renewal failed cannot run twice, and leave room for three renewals.
    RabbitMQ: a delivery unacked for longer than consumer_timeout closes the channel, and a
    countdown message is held unacked until due, so the longest countdown counts there.
    SQS: a countdown waits in the queue (DelaySeconds, at most 15 minutes), so the worker holds
    a message only while it runs; each queue's own visibility timeout is checked by the worker
    that consumes it (check_sqs_queues).
    """
    from django.conf import settings

    scheme = urlsplit(app.conf.broker_url or "").scheme.split("+")[0]
    limit, owner = longest_time_limit(app)
    if scheme == "sqs":
        from .sqs import MAX_DELAY_SECONDS

        if max_countdown > MAX_DELAY_SECONDS:
            raise UnsafeConfiguration(
                f"Refusing to start: API_MAX_COUNTDOWN={max_countdown}s, but SQS delays a "
                f"message by at most {MAX_DELAY_SECONDS}s. Set API_MAX_COUNTDOWN to at most "
                f"{MAX_DELAY_SECONDS}."
            )
        return
    if scheme in VISIBILITY_TRANSPORTS:
        timeout = float(app.conf.broker_transport_options.get("visibility_timeout", 3600))
        variable = "CELERY_BROKER_VISIBILITY_TIMEOUT"
        needed = max(limit, 3 * settings.CELERY_HEARTBEAT_INTERVAL)
        what = f"the longest task time limit ({limit:g}s, {owner}) and three lease renewals"
    elif scheme in AMQP_TRANSPORTS:
        timeout, variable = float(settings.RABBITMQ_CONSUMER_TIMEOUT), "RABBITMQ_CONSUMER_TIMEOUT"
        needed = limit + max_countdown
        what = (
            f"the longest task time limit ({limit:g}s, {owner}) plus API_MAX_COUNTDOWN "
            f"({max_countdown}s) = {needed:g}s"
        )
    else:
        return
    if timeout <= needed:
        raise UnsafeConfiguration(
            f"Refusing to start: {variable}={timeout:g}s must be longer than {what}. "
            f"Otherwise the broker redelivers a message while its task is still waiting or "
            f"running, and the task runs twice. Raise {variable} or lower the limits."
        )


def check_sqs_queues(app, queues: list[str]) -> None:
    """SQS: each queue's VisibilityTimeout attribute (the queue's, not the app's: SQS applies
    it) must exceed the longest hard time limit, or a task still running is delivered again.
    Read once by the worker at startup, from the queues it consumes."""
    from .sqs import visibility_timeouts

    limit, owner = longest_time_limit(app)
    for queue, timeout in visibility_timeouts(app, queues).items():
        if timeout <= limit:
            raise UnsafeConfiguration(
                f"Refusing to start: SQS queue {queue} has VisibilityTimeout={timeout:g}s, "
                f"which must be longer than the longest task time limit ({limit:g}s, {owner}). "
                f"Otherwise SQS delivers a message again while its task is still running, and "
                f"the task runs twice. Raise the queue's VisibilityTimeout (e.g. to "
                f"{limit + 30:g}s) or lower the limits."
            )
