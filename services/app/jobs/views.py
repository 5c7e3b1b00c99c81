"""Health endpoints and the home page."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.celery import app as celery_app

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
        checks["broker"] = "ok"
    except Exception as exc:
        logger.warning("readyz: broker unreachable: %s", exc)
        checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


@require_GET
def home(request):
    return render(request, "jobs/home.html", {"flower_url": settings.FLOWER_PUBLIC_URL})
