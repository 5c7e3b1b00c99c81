from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        # Every process that loads Django (web, migrate, worker, beat) refuses to run with a
        # broker visibility timeout that would duplicate tasks.
        from django.conf import settings

        from config.celery import app
        from config.checks import check_visibility_timeout

        from . import outbox  # noqa: F401 - registers drain_outbox (not in tasks.py)

        app.autodiscover_tasks(force=True)  # register every task now, so all limits are seen
        check_visibility_timeout(app, settings.API_MAX_COUNTDOWN)
