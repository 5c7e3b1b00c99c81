"""The test environment, set before pytest-django loads the settings (`-p tests.testenv`).

Only the environment, exactly as a deployment would give it: the settings module is the real one.
"""

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

from testsupport import free_port

# TEST_BROKER=sqs: a moto server (tests/conftest.py starts it on this port) stands in for
# Amazon SQS, with the pools' queues predefined as in production (config/sqs.py).
SQS_PORT = free_port()
BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1"),
    "amqp": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    "sqs": f"sqs://127.0.0.1:{SQS_PORT}",
}
BROKER = os.environ.get("TEST_BROKER", "redis")
SQS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",  # moto takes any: credentials come the AWS way, not in the URL
    "AWS_SECRET_ACCESS_KEY": "testing",
    "SQS_REGION": "eu-west-1",
    "SQS_ACCOUNT_ID": "123456789012",  # moto's account
    "SQS_QUEUE_PREFIX": f"test-{secrets.token_hex(4)}-",
}
# Rate-limit counters: the test Redis's host, database 8 (never the broker's), unless given.
_redis = urlsplit(BROKERS["redis"])
RATELIMIT_REDIS_URL = os.environ.get(
    "TEST_RATELIMIT_REDIS_URL", urlunsplit((_redis.scheme, _redis.netloc, "/8", "", ""))
)


def scratch_redis_url(offset: int, empty: bool = False) -> str:
    """A Redis database for a test that runs its own worker or beat: the test broker's number
    plus `offset`, so a run with TEST_REDIS_URL=.../10 never touches a default run's databases.
    `empty` flushes it first."""
    base = int(_redis.path.strip("/") or 0)
    url = urlunsplit((_redis.scheme, _redis.netloc, f"/{(base + offset) % 16}", "", ""))
    if empty:
        from kombu import Connection

        with Connection(url) as conn:
            conn.default_channel.client.flushdb()
    return url


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
    "API_LONG_JOB_MAX_SECONDS": "15",
    "RATELIMIT_REDIS_URL": RATELIMIT_REDIS_URL,
    # A fresh key space per run: counters of an earlier run never limit this one.
    "RATELIMIT_KEY_PREFIX": f"test-{secrets.token_hex(4)}",
    # Generous: the suite sends many requests from 127.0.0.1. tests/test_security.py starts
    # its own gunicorn with small limits.
    "RATELIMIT_ENQUEUE": "100000/m",
    "RATELIMIT_ENQUEUE_PER_IP": "100000/m",
    "RATELIMIT_SIGNUP_PER_IP": "1000/m",
    "RATELIMIT_RESET_PER_IP": "1000/m",
    "RATELIMIT_MAIL_PER_ADDRESS": "1000/m",
    "RATELIMIT_LOGIN_PER_IP": "1000/m",
    **(SQS_ENV if BROKER == "sqs" else {}),
}
os.environ.update(ENV)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
