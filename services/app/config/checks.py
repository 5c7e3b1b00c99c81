"""Startup checks that refuse to run a configuration that loses or duplicates tasks."""

from urllib.parse import urlsplit

from .env import MissingSetting

VISIBILITY_TRANSPORTS = {"redis", "rediss", "sentinel", "sqs"}
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

    With acks_late that means a second copy of a still-running task; with a countdown it means
    a copy of a task that has not even started. So the timeout must exceed the longest time
    limit plus the longest countdown the API accepts. RabbitMQ's consumer_timeout plays the same
    role for amqp, closing the channel instead.
    """
    scheme = urlsplit(app.conf.broker_url or "").scheme.split("+")[0]
    limit, owner = longest_time_limit(app)
    needed = limit + max_countdown
    if scheme in VISIBILITY_TRANSPORTS:
        timeout = float(app.conf.broker_transport_options.get("visibility_timeout", 3600))
        variable = "CELERY_BROKER_VISIBILITY_TIMEOUT"
    elif scheme in AMQP_TRANSPORTS:
        from django.conf import settings

        # Countdown messages are delivered at once and held unacked until due, so they count.
        timeout, variable = float(settings.RABBITMQ_CONSUMER_TIMEOUT), "RABBITMQ_CONSUMER_TIMEOUT"
    else:
        return
    if timeout <= needed:
        raise UnsafeConfiguration(
            f"Refusing to start: {variable}={timeout:g}s must be longer than the longest task "
            f"time limit ({limit:g}s, {owner}) plus API_MAX_COUNTDOWN ({max_countdown}s) = "
            f"{needed:g}s. Otherwise the broker redelivers a message while its task is still "
            f"waiting or running, and the task runs twice. Raise {variable} or lower the limits."
        )
