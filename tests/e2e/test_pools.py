"""The third pool of README's "Adding a pool", on the running Compose stack.

tests/e2e/run.sh applies that section to a scratch copy of the repository (its pools.yaml
entry, then `make pools`) and starts the stack from the copy, so `worker-reports` exists and
every process routes count_widgets to the `reports` queue. Runs before test_stack.py (file
order), whose last tests disturb the stack.
"""

from __future__ import annotations

import base64
import json
import re

from stack import ENV, HOST, QUEUE_METRICS, compose, enqueue, http, wait_for, wait_success

FLOWER = f"http://{HOST}:{ENV.get('FLOWER_PORT', '5555')}"
FLOWER_AUTH = "Basic " + base64.b64encode(
    f"{ENV.get('FLOWER_USER', 'admin')}:{ENV['FLOWER_PASSWORD']}".encode()
).decode()


def worker_of(task_id: str) -> str | None:
    """The node (<pool>@<host>) that ran the task, as Flower saw it."""
    status, raw = http(
        "GET", f"{FLOWER}/api/task/info/{task_id}", headers={"Authorization": FLOWER_AUTH}
    )
    return json.loads(raw).get("worker") if status == 200 else None


def reports_depth() -> float | None:
    """celery-stack-metrics' depth of the `reports` queue (None until it reports one)."""
    status, raw = http("GET", f"{QUEUE_METRICS}/metrics")
    if status != 200:
        return None
    m = re.search(r'^celery_queue_depth\{[^}]*queue_name="reports"[^}]*\} (\S+)$', raw.decode(), re.M)
    return float(m.group(1)) if m else None


def test_the_new_pool_runs_as_its_own_service():
    services = compose("ps", "--services", "--status", "running").split()
    assert {"worker-default", "worker-high", "worker-reports"} <= set(services), services


def test_a_task_routed_to_the_new_pool_runs_there_only():
    ids = [enqueue("count_widgets") for _ in range(3)]
    other = enqueue("add", [1, 1])  # still `high`: the new routes changed nothing else
    for task_id in ids:
        assert isinstance(wait_success(task_id)["result"], int)
    assert wait_success(other)["result"] == 2
    for task_id in ids:
        worker = wait_for(lambda t=task_id: worker_of(t), 30, f"Flower to report {task_id}")
        assert worker.startswith("reports@"), worker
    assert wait_for(lambda: worker_of(other), 30, "Flower to report add").startswith("high@")


def test_the_new_queue_depth_is_in_celery_stack_metrics():
    assert wait_for(lambda: reports_depth() is not None, 60, "the reports queue in the metrics")
    compose("stop", "worker-reports", timeout=120)
    try:
        ids = [enqueue("count_widgets") for _ in range(4)]
        # Nobody else consumes `reports`: the four wait there, and the companion sees them.
        wait_for(lambda: reports_depth() == 4, 60, "depth 4 on reports in celery-stack-metrics")
    finally:
        compose("up", "-d", "--no-deps", "--wait", "worker-reports", timeout=240)
    for task_id in ids:
        wait_success(task_id, timeout=120)
    wait_for(lambda: reports_depth() == 0, 60, "reports to drain in celery-stack-metrics")
