"""Health endpoints, the home page and the rate-limited login."""

import logging
from functools import wraps

import redis.exceptions
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from config.celery import app as celery_app

from .security import ApiError, client_ip, limit

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """Liveness: the process answers. Touches no dependency, so an outage elsewhere never gets
    web pods restarted."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """Readiness: the database and the broker are reachable, each within a bounded time."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        logger.warning("readyz: database unreachable: %s", exc)
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.BROKER_TIMEOUT)
            if settings.BROKER_IS_SQS:  # SQS has no connection to open: read a queue's size
                conn.default_channel.queue_declare(settings.CELERY_TASK_DEFAULT_QUEUE, passive=True)
        checks["broker"] = "ok"
    except Exception as exc:
        logger.warning("readyz: broker unreachable: %s", exc)
        checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


@require_GET
@ensure_csrf_cookie  # the page's fetch() calls send it back in X-CSRFToken
def home(request):
    context = {
        "flower_url": settings.FLOWER_PUBLIC_URL,
        "admin_url": f"/{settings.ADMIN_PATH}" if settings.ADMIN_PATH else "",
        "may_start": request.user.has_perm("jobs.use_progress_page"),
        "long_job_seconds": min(20, settings.API_LONG_JOB_MAX_SECONDS),
    }
    return render(request, "jobs/home.html", context)


def login_rate_limited(view):
    """Login form POSTs (the page's and the admin's) count per client address: 429 over
    RATELIMIT_LOGIN_PER_IP, with Retry-After. Password guessing gets that many tries."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method == "POST":
            try:
                limit(request, "login-ip", settings.RATELIMIT_LOGIN_PER_IP, client_ip(request))
            except redis.exceptions.RedisError as exc:  # closed, not open, when it cannot count
                logger.error("login rate-limit store unavailable: %s", exc)
                return HttpResponse("Try again later.", status=503, content_type="text/plain")
            except ApiError as exc:
                response = HttpResponse(exc.message, status=exc.status, content_type="text/plain")
                for name, value in exc.headers.items():
                    response[name] = value
                return response
        return view(request, *args, **kwargs)

    return wrapper
