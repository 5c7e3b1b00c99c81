from django.apps import AppConfig


class DeadLetterConfig(AppConfig):
    name = "deadletter"
    verbose_name = "Dead letters"

    def ready(self):
        from . import store  # noqa: F401 - connects the task_success receiver (replays)
