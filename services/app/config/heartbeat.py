"""Liveness without `inspect ping`: a file whose mtime proves the process is doing its job.

The worker's consumer touches it on its own event loop, and only while it holds a live broker
connection; beat touches it on every scheduler tick. `bin/heartbeat-check` compares its age with
CELERY_HEARTBEAT_MAX_AGE, which costs no broker round trip and no Django import.
The beat side lives in config/beat.py.
"""

import logging
from pathlib import Path

from celery import bootsteps
from django.conf import settings

logger = logging.getLogger(__name__)


def touch() -> None:
    Path(settings.CELERY_HEARTBEAT_FILE).touch()


class ConsumerHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: starts after the task consumer, stops when the connection is lost."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None

    def start(self, consumer):
        self.beat(consumer)
        self.timer_ref = consumer.timer.call_repeatedly(
            settings.CELERY_HEARTBEAT_INTERVAL, self.beat, (consumer,), priority=10
        )

    def beat(self, consumer):
        connection = consumer.connection
        if connection is None or not connection.connected or consumer.task_consumer is None:
            return  # cannot consume: let the file go stale
        touch()

    def stop(self, consumer):
        # Called when the connection is lost and on shutdown: no more heartbeats until the
        # consumer is running again.
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def shutdown(self, consumer):
        self.stop(consumer)
        Path(settings.CELERY_HEARTBEAT_FILE).unlink(missing_ok=True)
