"""Django settings. Everything comes from the environment: see docs/architecture.md."""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

from . import env, pools, sqs
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
    "deadletter",
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
# The JSON API gives each database call this long, then answers 503 (config/deadline.py):
# a silent (frozen, partitioned) server would otherwise hold the request until gunicorn's timeout.
API_DATABASE_DEADLINE = float(env.integer("API_DATABASE_DEADLINE", 3))
DATABASES["default"]["ENGINE"] = "config.postgres"  # Django's, plus the deadline above
# No database socket may block without a bound: a network partition leaves a connection
# half-open, and a read on it would otherwise wait forever (a wedged worker). libpq's
# keepalives notice a silent peer in about 25 s, tcp_user_timeout bounds unacknowledged
# writes, and statement_timeout bounds a query the server is still running.
DATABASES["default"]["OPTIONS"] = {
    "connect_timeout": env.integer("DATABASE_CONNECT_TIMEOUT", 2),
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,  # milliseconds
    "options": f"-c statement_timeout={env.integer('DATABASE_STATEMENT_TIMEOUT', 60) * 1000}",
    **DATABASES["default"].get("OPTIONS", {}),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.string("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

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
# Security: API authentication, rate limits, TLS and the deploy checklist. jobs/security.py and
# jobs/api.py use these; docs/architecture.md lists the variables.
# ---------------------------------------------------------------------------------------------
# The admin's URL prefix; empty turns the admin off (e.g. on replicas behind a public Ingress).
ADMIN_PATH = os.environ.get("DJANGO_ADMIN_PATH", "admin").strip().strip("/")
ADMIN_PATH = f"{ADMIN_PATH}/" if ADMIN_PATH else ""
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = LOGOUT_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# Bounded work per request: the longest long_job the API accepts. It must not exceed the
# `default` pool's soft time limit, so one request can never hold a slot beyond it (the web
# checks it against its CELERY_TASK_SOFT_TIME_LIMIT at startup: config/wsgi.py).
API_LONG_JOB_MAX_SECONDS = env.integer("API_LONG_JOB_MAX_SECONDS", 240)

# Rate limits (django-ratelimit), "N/period" with period s, m, h or d (e.g. 5/10m); empty turns
# one off, RATELIMIT_ENABLE=false all. They count in Redis, shared by every worker and replica.
RATELIMIT_ENABLE = env.boolean("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_ENQUEUE = os.environ.get("RATELIMIT_ENQUEUE", "600/m").strip()  # per token or user
RATELIMIT_ENQUEUE_PER_IP = os.environ.get("RATELIMIT_ENQUEUE_PER_IP", "1200/m").strip()
RATELIMIT_SIGNUP_PER_IP = os.environ.get("RATELIMIT_SIGNUP_PER_IP", "10/h").strip()
RATELIMIT_RESET_PER_IP = os.environ.get("RATELIMIT_RESET_PER_IP", "10/h").strip()
RATELIMIT_MAIL_PER_ADDRESS = os.environ.get("RATELIMIT_MAIL_PER_ADDRESS", "3/h").strip()
RATELIMIT_LOGIN_PER_IP = os.environ.get("RATELIMIT_LOGIN_PER_IP", "10/m").strip()  # POSTs
# X-Forwarded-For is believed only from this many trusted proxies in front of gunicorn (the
# Ingress controller: 1). 0: the TCP peer is the client, whatever the header says.
RATELIMIT_TRUSTED_PROXIES = env.integer("RATELIMIT_TRUSTED_PROXIES", 0)


def _ratelimit_redis_url() -> str:
    url = os.environ.get("RATELIMIT_REDIS_URL", "").strip()
    if url:
        return url
    broker = os.environ.get("CELERY_BROKER_URL", "").strip()
    if broker.startswith(("redis://", "rediss://")):
        # The broker's Redis, another database: counters never mix with queues.
        parts = urlsplit(broker)
        database = env.integer("RATELIMIT_REDIS_DB", 1)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    return ""  # only the web needs it: config/wsgi.py refuses to start without it


RATELIMIT_REDIS_URL = _ratelimit_redis_url()


CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {
        # Redis, with local counts while Redis is unreachable (config/ratelimit_store.py).
        "BACKEND": "config.ratelimit_store.RedisWithLocalFallback",
        "LOCATION": RATELIMIT_REDIS_URL or "redis://rate-limit-store-not-configured",
        "KEY_PREFIX": env.string("RATELIMIT_KEY_PREFIX", "celery-stack"),
        # A store that does not answer within 1 s (a local Redis answers in milliseconds) is
        # left for local counts (config/ratelimit_store.py), so it costs a request at most 1 s
        # and the broker's own timeouts still fit in the API's budget. A connection that timed
        # out is dropped; the next try, 5 s later, takes a new one.
        "OPTIONS": {
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
        },
    },
}
# Outbox rows already published are deleted after this long (jobs/outbox.py).
OUTBOX_KEEP_SECONDS = env.integer("OUTBOX_KEEP_SECONDS", 7 * 24 * 3600)

# TLS. Behind a proxy that terminates TLS (the chart's Ingress), DJANGO_SECURE_PROXY_SSL=true
# trusts its X-Forwarded-Proto and turns on everything `check --deploy` asks for. Compose serves
# plain HTTP on 127.0.0.1, where these stay off (README: production defaults).
SECURE_TLS = env.boolean("DJANGO_SECURE_PROXY_SSL", False)
if SECURE_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("DJANGO_SECURE_COOKIES", SECURE_TLS)
SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", SECURE_TLS)
# Probes reach the pod over plain HTTP, without the proxy: never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.integer("DJANGO_SECURE_HSTS_SECONDS", 31536000 if SECURE_TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_TLS)
SECURE_HSTS_PRELOAD = env.boolean("DJANGO_SECURE_HSTS_PRELOAD", SECURE_TLS)
SESSION_COOKIE_HTTPONLY = True

# ---------------------------------------------------------------------------------------------
# Celery. Read by config/celery.py through the CELERY_ namespace.
# ---------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.required("CELERY_BROKER_URL")
# Amazon SQS (sqs://): region, queue prefix and predefined queues come from config/sqs.py.
BROKER_IS_SQS = sqs.is_sqs(CELERY_BROKER_URL)
# django-db, made safe for database outages (config/results.py): a result or state write that
# fails on a connection error is retried for up to RESULT_WRITE_RETRY_SECONDS, within the
# task's soft time limit; then the message is requeued and the worker pauses consuming.
CELERY_RESULT_BACKEND = "config.results:RecordingBackend"
RESULT_WRITE_RETRY_SECONDS = env.integer("CELERY_RESULT_WRITE_RETRY_SECONDS", 90)
# Writes of the worker's main process (expired, revoked, timed-out tasks) run in a thread.
RESULT_DEFERRED_RETRY_SECONDS = env.integer("CELERY_RESULT_DEFERRED_RETRY_SECONDS", 600)
# While the database is down, the worker probes it this often to resume consuming.
DATABASE_PROBE_INTERVAL = env.integer("DATABASE_PROBE_INTERVAL", 2)
CELERY_RESULT_EXTENDED = True  # store task name, args, worker and queue with each result
CELERY_RESULT_EXPIRES = env.integer("CELERY_RESULT_EXPIRES", 7 * 24 * 3600)

# JSON only: pickle from a broker is remote code execution.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]

CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True

# Eager mode runs a task inside the caller at .delay(): no broker, no routing, no retries in
# another process, no time limits. A debugging aid for `make dev` only; anywhere else it would
# hide every failure the stack is built against, so it is refused unless DJANGO_DEBUG is on.
CELERY_TASK_ALWAYS_EAGER = env.boolean("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER
if CELERY_TASK_ALWAYS_EAGER and not DEBUG:
    raise env.MissingSetting(
        "Refusing to start: CELERY_TASK_ALWAYS_EAGER=true is for development only "
        "(make dev, with DJANGO_DEBUG=true); unset it."
    )

# Every pool's queues, declared (never created on the fly, so a typo in a route fails instead
# of filling an unconsumed queue), and the routes; anything not routed goes to `default`. Both
# come from the environment (CELERY_TASK_QUEUES, CELERY_TASK_ROUTES: config/pools.py), derived
# from the one declaration of the pools (pools.yaml; the chart's workers.pools).
_queue_names = pools.queue_names()
pools.check_worker_queues(_queue_names)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_QUEUES = pools.declare(_queue_names)
CELERY_TASK_ROUTES = pools.routes(_queue_names)

# A task whose message keeps coming back (its process dies while running it) runs at most this
# many times, then is recorded as FAILURE ("worker lost N times") and kept as a dead letter
# (config/celery.py). A task sets its own with the task option max_deliveries.
TASK_MAX_DELIVERIES = env.integer("CELERY_TASK_MAX_DELIVERIES", 3)
if TASK_MAX_DELIVERIES < 1:
    raise env.MissingSetting(
        f"CELERY_TASK_MAX_DELIVERIES must be at least 1, got {TASK_MAX_DELIVERIES}."
    )
# The worker's consumer keeps the messages it cannot run in the dead-letter store (deadletter/).
CELERY_WORKER_CONSUMER = "deadletter.consumer:DeadLetteringConsumer"

# Time limits are explicit, per pool: the `high` pool runs with lower values (compose/helm).
CELERY_TASK_SOFT_TIME_LIMIT = env.integer("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env.integer("CELERY_TASK_TIME_LIMIT", 360)
# The longest countdown the API accepts. A countdown/ETA message stays unacked on the worker
# until it is due, so it counts against the visibility timeout too; on SQS it waits in the
# queue instead (DelaySeconds), which SQS caps at 15 minutes (config/checks.py).
API_MAX_COUNTDOWN = env.integer("API_MAX_COUNTDOWN", sqs.MAX_DELAY_SECONDS)

# Redis redelivers a message left unacked for longer than the visibility timeout. A live worker
# renews the lease of every message it holds (config/worker.py), so a running task or one
# waiting for its countdown is never redelivered; a worker killed outright stops renewing, and
# its messages come back after this long. Each pool has its own unacked keys and timeout, the
# pool's hard time limit plus a margin, so `high` tasks come back after 75 s
# while `default` ones get the time their limit allows. Checked at startup (config/checks.py).
WORKER_POOL_NAME = env.string("CELERY_WORKER_POOL_NAME", "")
VISIBILITY_MARGIN = 30
CELERY_BROKER_VISIBILITY_TIMEOUT = env.integer(
    "CELERY_BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + VISIBILITY_MARGIN
)
# RabbitMQ closes a channel whose delivery stays unacked past its consumer_timeout (30 min by
# default); the startup check applies it when the broker is amqp.
RABBITMQ_CONSUMER_TIMEOUT = env.integer("RABBITMQ_CONSUMER_TIMEOUT", 1800)

# Bounded broker I/O: the API must answer 503 within ~2 s when the broker is down.
BROKER_TIMEOUT = env.integer("CELERY_BROKER_TIMEOUT", 2)
# RabbitMQ's publisher confirm (below) arrives in milliseconds; waiting 1 s, then one retry on a
# new connection (CELERY_TASK_PUBLISH_RETRY_POLICY), keeps a silent broker's 503 within ~5 s.
BROKER_CONFIRM_TIMEOUT = 1.0
_unacked = f":{WORKER_POOL_NAME}" if WORKER_POOL_NAME else ""
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    "unacked_key": f"unacked{_unacked}",
    "unacked_index_key": f"unacked_index{_unacked}",
    "unacked_mutex_key": f"unacked_mutex{_unacked}",
    # Sweep for messages abandoned by a dead worker every 10 s (kombu's default is every 100 s:
    # a 10 s interval times a throttle of 10). The sweep is one cheap ZRANGEBYSCORE.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": BROKER_TIMEOUT,
    "socket_timeout": BROKER_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": 25,
    # RabbitMQ: a publish returns once the broker has the message (publisher confirms), not
    # once it is in a socket buffer; a broker cut off the network otherwise loses what the API
    # already answered 202 for. The wait is bounded (RecordingTask.apply_async, config/celery.py).
    # The Redis transport ignores it: its LPUSH is answered anyway.
    "confirm_publish": True,
}
if BROKER_IS_SQS:
    # SQS applies each queue's own VisibilityTimeout attribute (checked by the worker at
    # startup); this one is used only for queues kombu creates (no SQS_ACCOUNT_ID).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
        **sqs.transport_options(
            CELERY_BROKER_URL, _queue_names, BROKER_TIMEOUT, BROKER_CONFIRM_TIMEOUT
        ),
    }
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
# RabbitMQ: AMQP heartbeats every 10 s, so the broker drops a connection cut off by a partition
# within about 20 s. With Celery's 120 s, a reconnecting worker crash-looped on its own old
# connection's exclusive pidbox queue (RESOURCE_LOCKED) for minutes.
CELERY_BROKER_HEARTBEAT = env.integer("CELERY_BROKER_HEARTBEAT", 10)
# A task still running when the broker connection drops can no longer be acknowledged (its
# delivery tag belonged to the old channel), and the broker delivers it again: stop it, so it
# runs to completion once, not twice. Its lease is released at once (config/worker.py).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Workers and beat wait for a broker that starts after them (Compose, rolling restarts).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # keep retrying; liveness comes from the heartbeat
# Publishing: one quick retry, then give up so the caller can answer 503.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

# Prefetch: each process reserves one message at a time (per pool: prefetchMultiplier) and
# Redis gets no prefetch at all, so the broker's list length is the true backlog and the
# autoscaler sees it.
CELERY_WORKER_PREFETCH_MULTIPLIER = pools.prefetch_multiplier()
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

# Events: celery-exporter and celery-stack-metrics build their metrics from them. SQS has no
# fanout for them (nor for remote control): off there, and nothing in the app relies on them.
CELERY_WORKER_SEND_TASK_EVENTS = not BROKER_IS_SQS
CELERY_TASK_SEND_SENT_EVENT = not BROKER_IS_SQS
CELERY_WORKER_ENABLE_REMOTE_CONTROL = not BROKER_IS_SQS  # Celery skips it there anyway
# STARTED costs a result-backend write per task; only tasks that run long enough for someone to
# watch them set track_started (jobs/tasks.py). Events report every start anyway.
CELERY_TASK_TRACK_STARTED = False

# Celery's Django fixup closes the database connection before and after every task unless this
# is set: a new Postgres connection per task halved throughput in `make bench`. With it set,
# config/celery.py applies Django's own rule instead (CONN_MAX_AGE and health checks).
CELERY_DB_REUSE_MAX = 1_000_000

CELERY_BEAT_SCHEDULER = "config.beat:HeartbeatDatabaseScheduler"
# One beat sends at a time (config/beat.py): a second one takes over within about this long after
# the first stops renewing. Every sent task's last run is saved at once, for the one taking over.
CELERY_BEAT_LEASE_SECONDS = env.integer("CELERY_BEAT_LEASE_SECONDS", 30)
if CELERY_BEAT_LEASE_SECONDS < 5:  # renewed every third, and given up 1 s before it expires
    raise env.MissingSetting(
        f"CELERY_BEAT_LEASE_SECONDS must be at least 5, got {CELERY_BEAT_LEASE_SECONDS}."
    )
CELERY_BEAT_SYNC_EVERY = 1

# Liveness (config/worker.py, config/beat.py): the worker touches this file while it makes
# progress, beat on every tick. A worker idle for CELERY_WORKER_STALL_SECONDS while its queues
# hold messages, or whose event loop stops, exits so that its restart policy replaces it.
CELERY_HEARTBEAT_FILE = env.string("CELERY_HEARTBEAT_FILE", "/tmp/celery-heartbeat")  # noqa: S108
CELERY_HEARTBEAT_INTERVAL = env.integer("CELERY_HEARTBEAT_INTERVAL", 10)
CELERY_WORKER_STALL_SECONDS = env.integer("CELERY_WORKER_STALL_SECONDS", 60)

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
