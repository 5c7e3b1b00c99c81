"""A tiny Celery app for the tests: task events on, JSON only, published_at header like the real app."""

import json
import os
import time

from celery import Celery
from celery.signals import before_task_publish

app = Celery("csm-test", broker=os.environ["TEST_BROKER_URL"])
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    result_backend=None,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_transport_options=json.loads(os.environ.get("TEST_TRANSPORT_OPTIONS") or "{}"),
    broker_connection_retry_on_startup=True,
)
if os.environ.get("TEST_BEAT_QUEUE"):
    app.conf.beat_schedule = {
        "beat-heartbeat": {
            "task": "jobs.tasks.beat_heartbeat",
            "schedule": 1.0,
            "options": {"queue": os.environ["TEST_BEAT_QUEUE"]},
        }
    }


@before_task_publish.connect
def add_published_at(headers=None, **_):
    if headers is not None:
        headers.setdefault("published_at", time.time())


@app.task(name="tests.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="jobs.tasks.beat_heartbeat")
def beat_heartbeat():
    return "ok"
