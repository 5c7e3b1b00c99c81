"""Beat's scheduler: django-celery-beat's DatabaseScheduler plus a liveness heartbeat."""

from django_celery_beat.schedulers import DatabaseScheduler

from .heartbeat import touch


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """Touches the heartbeat file on every tick (at most every beat_max_loop_interval, 5 s)."""

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        touch()
        return interval
