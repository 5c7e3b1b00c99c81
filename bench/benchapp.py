"""The app's own Celery app (services/app config/celery.py, the stack's settings), with
BENCH_CELERY_CONF (a JSON object of Celery settings) applied on top: how the benchmark runs
the same worker with Celery's defaults or with other pools, concurrency and prefetch."""

import json
import os

from config.celery import app

app.conf.update(json.loads(os.environ.get("BENCH_CELERY_CONF") or "{}"))

__all__ = ["app"]
