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

    Redis: a live worker renews the lease of every message it holds every
    CELERY_HEARTBEAT_INTERVAL (config/worker.py), so a held message is redelivered only when
    its worker is gone. The timeout must still exceed the longest hard time limit, so that a
    task whose lease renewal failed cannot run twice, and leave room for three renewals.
    RabbitMQ: a delivery unacked for longer than consumer_timeout closes the channel, and a
    countdown message is held unacked until due, so the longest countdown counts there.
    """
    from django.conf import settings

    scheme = urlsplit(app.conf.broker_url or "").scheme.split("+")[0]
    limit, owner = longest_time_limit(app)
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
