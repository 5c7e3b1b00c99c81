"""The result backend: django-celery-results' database backend, except that a finished task
stays finished.

Celery publishes a retry before it stores the RETRY state of the attempt that asked for it. A
retry with a short countdown can therefore run in another pool process and store its SUCCESS or
FAILURE first; the late RETRY would then overwrite it, and callers would wait on RETRY forever.
"""

from celery import states
from django_celery_results.backends import DatabaseBackend


class FinishedStaysFinishedBackend(DatabaseBackend):
    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status == states.RETRY and (
            self.TaskModel._default_manager.filter(task_id=task_id, status__in=states.READY_STATES)
            .using(using)
            .exists()
        ):
            return result
        return super()._store_result(task_id, result, status, traceback, request, using)
