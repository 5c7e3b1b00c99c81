"""The app's own Celery app (services/app config/celery.py, the stack's settings), with
BENCH_CELERY_CONF (a JSON object of Celery settings) applied on top: how the benchmark runs
the same worker with Celery's defaults or with other pools, concurrency and prefetch.

BENCH_RECORD_STARTS=1 (the isolation benchmark) records when each task really starts, in the
broker's Redis: the result row is written only when the task ends."""

import json
import os
import time

from celery import signals

from config.celery import app

app.conf.update(json.loads(os.environ.get("BENCH_CELERY_CONF") or "{}"))

if os.environ.get("BENCH_RECORD_STARTS"):
    import redis

    _starts = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])

    @signals.task_prerun.connect
    def record_start(task_id=None, **_kwargs):
        _starts.hset("bench:starts", task_id, time.time())


__all__ = ["app"]
