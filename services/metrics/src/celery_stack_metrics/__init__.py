"""celery-stack-metrics: the companion exporter for what celery-exporter lacks."""

__version__ = "0.1.0"
