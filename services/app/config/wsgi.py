import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from config import env

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# The web's CELERY_TASK_SOFT_TIME_LIMIT is the `default` pool's (where long_job runs); workers
# of other pools have lower limits and do not read this.
if settings.API_LONG_JOB_MAX_SECONDS > settings.CELERY_TASK_SOFT_TIME_LIMIT:
    raise env.MissingSetting(
        f"API_LONG_JOB_MAX_SECONDS ({settings.API_LONG_JOB_MAX_SECONDS}) must not exceed "
        f"CELERY_TASK_SOFT_TIME_LIMIT ({settings.CELERY_TASK_SOFT_TIME_LIMIT}), the default pool's."
    )

# Only the web serves rate-limited endpoints, so only the web needs their Redis (workers, beat
# and migrate may run on RabbitMQ without one).
if settings.RATELIMIT_ENABLE and not settings.RATELIMIT_REDIS_URL:
    raise env.MissingSetting(
        "RATELIMIT_REDIS_URL is required when the broker is not Redis: the rate limits count "
        "in Redis (or set RATELIMIT_ENABLE=false)."
    )

# Resolve the URLconf now, importing every view: under gunicorn's preload_app the master does
# it once and the workers it forks serve their first request without that cost.
get_resolver().url_patterns  # noqa: B018 - evaluated for its imports
