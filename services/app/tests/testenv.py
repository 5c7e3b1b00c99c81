"""The test environment, set before pytest-django loads the settings (`-p tests.testenv`).

Only the environment, exactly as a deployment would give it: the settings module is the real one.
"""

import os
import secrets

from .support import free_port

BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1"),
    "amqp": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
BROKER = os.environ.get("TEST_BROKER", "redis")

ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
    "DATABASE_URL": os.environ.get(
        "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/celery_stack"
    ),
    "CELERY_BROKER_URL": BROKERS[BROKER],
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "127.0.0.1",
    "EMAIL_PORT": str(free_port()),  # the aiosmtpd server in conftest.py
    "EMAIL_TASK_MAX_RETRIES": "3",
    "EMAIL_TASK_RETRY_BACKOFF": "1",
    "EMAIL_TASK_RETRY_BACKOFF_MAX": "2",
    "PARTNER_RATE_LIMIT": "60/m",
    "CELERY_TASK_SOFT_TIME_LIMIT": "20",
    "CELERY_TASK_TIME_LIMIT": "30",
}
os.environ.update(ENV)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
