"""Run one task in the foreground, in this process, and print its result.

    manage.py run_task add --args '[2, 3]'
    manage.py run_task long_job --kwargs '{"seconds": 2}'
    make run-task NAME=add ARGS='[2, 3]'        (in the stack's web container)

For debugging a task's body: a `breakpoint()` in it stops here, with this terminal. Nothing
goes through the broker, so there is no routing, no retry in another process and no time
limit; a worker runs the same code with all of them.
"""

import json

from celery import current_app
from django.core.management.base import BaseCommand, CommandError


def json_argument(raw: str, kind: type, what: str):
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} must be JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise CommandError(f"{what} must be a JSON {kind.__name__}, got {raw!r}")
    return value


class Command(BaseCommand):
    help = "Run one task in this process (no broker) and print its result as JSON."

    def add_arguments(self, parser):
        parser.add_argument("task", help="task name: add, or jobs.tasks.add")
        parser.add_argument(
            "--args", dest="task_args", default="[]", help="positional arguments, a JSON list"
        )
        parser.add_argument(
            "--kwargs", dest="task_kwargs", default="{}", help="keyword arguments, a JSON object"
        )

    def handle(self, *unused, **options):
        name = options["task"]
        tasks = current_app.tasks
        task = tasks.get(name) or tasks.get(f"jobs.tasks.{name}")
        if task is None:
            known = sorted(t.removeprefix("jobs.tasks.") for t in tasks if t.startswith("jobs."))
            raise CommandError(f"no task {name!r}; the app's tasks: {', '.join(known)}")
        result = task.apply(
            args=json_argument(options["task_args"], list, "--args"),
            kwargs=json_argument(options["task_kwargs"], dict, "--kwargs"),
        )
        if result.failed():
            self.stderr.write(result.traceback or repr(result.result))
            raise CommandError(f"{task.name} failed: {result.result!r}")
        self.stdout.write(json.dumps(result.result))
