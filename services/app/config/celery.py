"""The Celery application. Settings live in config/settings.py under the CELERY_ namespace."""

import logging.config
import os
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
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
def add_consumer_heartbeat(sender=None, instance=None, **_kwargs):
    from .heartbeat import ConsumerHeartbeat

    app.steps["consumer"].add(ConsumerHeartbeat)


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_db_connections(**_kwargs):
    """Treat each task as Django treats a request: reuse the connection until it is broken or older
    than CONN_MAX_AGE. (CELERY_DB_REUSE_MAX stops the fixup from closing it every time.)"""
    from django.db import close_old_connections

    close_old_connections()
