"""Django settings. Everything comes from the environment: see docs/architecture.md."""

from pathlib import Path

import dj_database_url
from kombu import Exchange, Queue

from . import env
from .logs import json_logging

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = env.required("DJANGO_SECRET_KEY")
DEBUG = env.boolean("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.csv("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env.csv("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "django_celery_results",
    "django_celery_beat",
    "jobs",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env.required("DATABASE_URL"),
        conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Behind a proxy that terminates TLS, set DJANGO_SECURE_PROXY_SSL=true.
if env.boolean("DJANGO_SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

# The JSON API refuses bodies above this size with 413 (see jobs/api.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.integer("API_MAX_BODY_BYTES", 64 * 1024)

EMAIL_BACKEND = env.string("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.string("EMAIL_HOST", "localhost")
EMAIL_PORT = env.integer("EMAIL_PORT", 25)
EMAIL_TIMEOUT = env.integer("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = env.string("EMAIL_FILE_PATH", "/tmp/app-messages")  # noqa: S108 - file backend only
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "celery-stack@localhost")
# send_email retries SMTP failures with exponential backoff and jitter, up to this many times.
EMAIL_TASK_MAX_RETRIES = env.integer("EMAIL_TASK_MAX_RETRIES", 5)
EMAIL_TASK_RETRY_BACKOFF = env.integer("EMAIL_TASK_RETRY_BACKOFF", 2)
EMAIL_TASK_RETRY_BACKOFF_MAX = env.integer("EMAIL_TASK_RETRY_BACKOFF_MAX", 300)

# A password-reset mail that arrives late is useless: it is sent with this `expires`.
PASSWORD_RESET_EMAIL_EXPIRES = env.integer("PASSWORD_RESET_EMAIL_EXPIRES", 600)
# The partner API's quota, enforced per worker by Celery's rate limit.
PARTNER_RATE_LIMIT = env.string("PARTNER_RATE_LIMIT", "30/m")

FLOWER_PUBLIC_URL = env.string("FLOWER_PUBLIC_URL", "http://localhost:5555")

# ---------------------------------------------------------------------------------------------
# Celery. Read by config/celery.py through the CELERY_ namespace.
# ---------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.required("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = "config.results:FinishedStaysFinishedBackend"  # django-db, plus one guard
CELERY_RESULT_EXTENDED = True  # store task name, args, worker and queue with each result
CELERY_RESULT_EXPIRES = env.integer("CELERY_RESULT_EXPIRES", 7 * 24 * 3600)

# JSON only: pickle from a broker is remote code execution.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]

CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True

# Two explicit queues; anything not routed goes to `default`. Queues are declared here, never
# created on the fly, so a typo in a route fails instead of filling an unconsumed queue.
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_QUEUES = (
    Queue("default", Exchange("default", type="direct"), routing_key="default"),
    Queue("high", Exchange("high", type="direct"), routing_key="high"),
)
CELERY_TASK_ROUTES = {
    # Latency-sensitive: the user is waiting, or it is cheap and must never sit behind slow work.
    "jobs.tasks.send_email": {"queue": "high"},
    "jobs.tasks.add": {"queue": "high"},
    "jobs.tasks.mul": {"queue": "high"},
    "jobs.tasks.beat_heartbeat": {"queue": "high"},
    # Everything else (slow or CPU-heavy) falls through to `default`.
}

# Time limits are explicit, per pool: the `high` pool runs with lower values (compose/helm).
CELERY_TASK_SOFT_TIME_LIMIT = env.integer("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env.integer("CELERY_TASK_TIME_LIMIT", 360)
# The longest countdown the API accepts. A countdown/ETA message stays unacked on the worker
# until it is due, so it counts against the visibility timeout too.
API_MAX_COUNTDOWN = env.integer("API_MAX_COUNTDOWN", 900)

# Redis redelivers any message unacked for longer than this: it must exceed the longest time
# limit plus the longest countdown, or a slow task runs twice. Checked at startup
# (config/checks.py). The same value goes to the result backend transport options.
CELERY_BROKER_VISIBILITY_TIMEOUT = env.integer("CELERY_BROKER_VISIBILITY_TIMEOUT", 3600)
# RabbitMQ closes a channel whose delivery stays unacked past its consumer_timeout (30 min by
# default); the startup check applies it when the broker is amqp.
RABBITMQ_CONSUMER_TIMEOUT = env.integer("RABBITMQ_CONSUMER_TIMEOUT", 1800)

# Bounded broker I/O: the API must answer 503 within ~2 s when the broker is down.
BROKER_TIMEOUT = env.integer("CELERY_BROKER_TIMEOUT", 2)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    # Sweep for messages abandoned by a dead worker every 10 s (kombu's default is every 100 s:
    # a 10 s interval times a throttle of 10). The sweep is one cheap ZRANGEBYSCORE.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": BROKER_TIMEOUT,
    "socket_timeout": BROKER_TIMEOUT,
    "health_check_interval": 25,
}
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
# Workers and beat wait for a broker that starts after them (Compose, rolling restarts).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # keep retrying; liveness comes from the heartbeat
# Publishing: two quick retries, then give up so the caller can answer 503.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

# Prefetch: each process reserves one message at a time and Redis gets no prefetch at all, so
# the broker's list length is the true backlog and the autoscaler sees it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_DISABLE_PREFETCH = True  # Celery >= 5.6, Redis only; ignored on amqp

# Worker process settings (per pool in compose/helm).
CELERY_WORKER_CONCURRENCY = env.integer("CELERY_WORKER_CONCURRENCY", 2)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.integer("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.integer("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 262144)
# On a cold shutdown, running tasks get this long before they are cut off and (acks_late)
# requeued. A plain SIGTERM is a warm shutdown: running tasks finish within the grace period.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(env.integer("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 10))
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = True  # requeue waiting ETA tasks too
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # Django's LOGGING (JSON) configures everything

# Events: celery-exporter and celery-stack-metrics build their metrics from them.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# STARTED costs a result-backend write per task; only tasks that run long enough for someone to
# watch them set track_started (jobs/tasks.py). Events report every start anyway.
CELERY_TASK_TRACK_STARTED = False

# Celery's Django fixup closes the database connection before and after every task unless this
# is set: a new Postgres connection per task halved throughput in `make bench`. With it set,
# config/celery.py applies Django's own rule instead (CONN_MAX_AGE and health checks).
CELERY_DB_REUSE_MAX = 1_000_000

CELERY_BEAT_SCHEDULER = "config.beat:HeartbeatDatabaseScheduler"

# Liveness: the worker consumer and the beat scheduler touch this file while healthy.
CELERY_HEARTBEAT_FILE = env.string("CELERY_HEARTBEAT_FILE", "/tmp/celery-heartbeat")  # noqa: S108
CELERY_HEARTBEAT_INTERVAL = env.integer("CELERY_HEARTBEAT_INTERVAL", 10)

# ---------------------------------------------------------------------------------------------
# Logging: one JSON object per line on stdout, for Django, gunicorn and Celery alike.
# ---------------------------------------------------------------------------------------------
LOG_LEVEL = env.string("DJANGO_LOG_LEVEL", "INFO").upper()
LOGGING = json_logging(
    LOG_LEVEL,
    {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": env.string("CELERY_LOG_LEVEL", LOG_LEVEL).upper()},
    },
)
