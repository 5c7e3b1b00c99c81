"""The pools' queues and routes, from the environment (docs/pools.md).

CELERY_TASK_QUEUES  every queue of every pool, comma-separated: default,high,reports
CELERY_TASK_ROUTES  JSON object, task name (or Celery glob pattern) -> queue:
                    {"jobs.tasks.add": "high", "reports.*": "reports"}

Compose and the chart set both from the one declaration of the pools (pools.yaml, the chart's
workers.pools); a process started without them (tests, manage.py on a laptop) gets the same
values from pools.json, which `make pools` writes. Queues are declared, never created on the
fly (task_create_missing_queues is off), so a route or a worker naming an undeclared queue is
refused here, at startup, with the variable to fix.
"""

import json
import os
import re
from pathlib import Path

from kombu import Exchange, Queue

from .env import MissingSetting

DEFAULTS = Path(__file__).with_name("pools.json")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
# RabbitMQ moves what it dead-letters from a task queue (rejected without requeue, expired) to
# this exchange and its queue; deadletter/tasks.py moves them into the dead-letter store.
DEAD_LETTER_EXCHANGE = "dead-letter"


def _defaults() -> dict:
    return json.loads(DEFAULTS.read_text())


def queue_names() -> list[str]:
    raw = os.environ.get("CELERY_TASK_QUEUES", "").strip()
    names = [q.strip() for q in raw.split(",") if q.strip()] if raw else _defaults()["queues"]
    bad = [q for q in names if not QUEUE_NAME.match(q)]
    if bad:
        raise MissingSetting(
            f"CELERY_TASK_QUEUES: invalid queue names {bad} (use A-Z a-z 0-9 _.:-)"
        )
    if len(set(names)) != len(names):
        raise MissingSetting(f"CELERY_TASK_QUEUES lists a queue twice: {raw!r}")
    if "default" not in names:
        raise MissingSetting(
            "CELERY_TASK_QUEUES must include `default`: every task no route names goes there."
        )
    return names


def routes(declared: list[str]) -> dict[str, dict]:
    raw = os.environ.get("CELERY_TASK_ROUTES", "").strip()
    if raw:
        try:
            table = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MissingSetting(
                f"CELERY_TASK_ROUTES is not valid JSON ({exc}); "
                f'expected e.g. {{"jobs.tasks.add": "high"}}'
            ) from None
    else:
        table = _defaults()["routes"]
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise MissingSetting('CELERY_TASK_ROUTES must be a JSON object {"<task>": "<queue>", ...}')
    unknown = sorted({q for q in table.values() if q not in declared})
    if unknown:
        raise MissingSetting(
            f"CELERY_TASK_ROUTES sends tasks to {unknown}, which CELERY_TASK_QUEUES does not "
            f"declare ({','.join(declared)}): those tasks would fail to publish. Declare the "
            f"queue (add it to a pool) or fix the route."
        )
    return {task: {"queue": queue} for task, queue in table.items()}


def declare(names: list[str]) -> tuple[Queue, ...]:
    # Queue arguments are fixed when RabbitMQ creates a queue (docs/faults.md: migrating);
    # the Redis transport ignores them.
    arguments = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    return tuple(
        Queue(n, Exchange(n, type="direct"), routing_key=n, queue_arguments=arguments)
        for n in names
    )


def check_worker_queues(declared: list[str]) -> None:
    """A worker consuming an undeclared queue would die with ImproperlyConfigured: say why."""
    raw = os.environ.get("CELERY_WORKER_QUEUES", "").strip()
    missing = [q.strip() for q in raw.split(",") if q.strip() and q.strip() not in declared]
    if missing:
        raise MissingSetting(
            f"CELERY_WORKER_QUEUES names {missing}, which CELERY_TASK_QUEUES does not declare "
            f"({','.join(declared)}). Every process must know every pool's queues: set "
            f"CELERY_TASK_QUEUES from the same declaration (pools.yaml / workers.pools)."
        )


def prefetch_multiplier() -> int:
    """Messages each worker process reserves. 0 would mean unlimited: the backlog would hide
    in the workers, where neither the autoscaler nor the alerts see it."""
    raw = os.environ.get("CELERY_WORKER_PREFETCH_MULTIPLIER", "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise MissingSetting(
            f"CELERY_WORKER_PREFETCH_MULTIPLIER must be an integer >= 1 (1 keeps the backlog on "
            f"the broker, where the autoscaler reads it), got {raw!r}."
        )
    return int(raw)
