"""End-to-end test of the running Compose stack (tests/e2e/run.sh starts it with `make up`).

Everything is real: the images built from services/Dockerfile, Postgres, Redis, both worker
pools, beat, Flower and celery-exporter. The test talks to the published ports, like a user,
and drives the engine through tools/compose.sh (signals, restarts).

Env: ENV_FILE (the stack's env file: ports and Flower credentials), COMPOSE_PROJECT_NAME,
BROKER (redis, the default, or rabbitmq). Tests run in file order; the last two disturb the
stack (SIGTERM to a worker, SIGKILL to the broker) and put it back.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time

from stack import ENV, HOST, QUEUE_METRICS, WEB, compose, enqueue, http, task_status, wait_for, wait_success

BROKER = os.environ.get("BROKER", "redis")  # tools/compose.sh: BROKER=rabbitmq adds the override
FLOWER = f"http://{HOST}:{ENV.get('FLOWER_PORT', '5555')}"
EXPORTER = f"http://{HOST}:{ENV.get('EXPORTER_PORT', '9808')}"
FLOWER_AUTH = (
    "Basic "
    + base64.b64encode(
        f"{ENV.get('FLOWER_USER', 'admin')}:{ENV['FLOWER_PASSWORD']}".encode()
    ).decode()
)


# ---- helpers --------------------------------------------------------------------------------------
def queued(queue: str) -> int:
    """Messages waiting in `queue`, asked inside the broker container (it is not published)."""
    if BROKER == "rabbitmq":
        out = compose(
            "exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "list_queues", "name", "messages"
        )
        counts = dict(line.split() for line in out.splitlines() if line.strip())
        return int(counts.get(queue, 0))
    # REDISCLI_AUTH is set in the redis container, so no password on the command line.
    return int(compose("exec", "-T", "redis", "redis-cli", "llen", queue).strip())


def flower_task(task_id: str) -> dict | None:
    status, raw = http(
        "GET", f"{FLOWER}/api/task/info/{task_id}", headers={"Authorization": FLOWER_AUTH}
    )
    if status != 200:
        return None
    info = json.loads(raw)
    return info if info.get("worker") else None


def metric_samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} for every sample of metric `name` in a Prometheus text exposition."""
    out = {}
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        out[m.group(1) or ""] = float(m.group(2))
    return out


# ---- tests ---------------------------------------------------------------------------------------
def test_web_is_healthy_and_ready():
    assert http("GET", f"{WEB}/healthz")[0] == 200
    status, raw = http("GET", f"{WEB}/readyz")
    assert status == 200, raw[:500]


def test_tasks_run_on_both_queues_in_their_own_pools():
    add_id = enqueue("add", [2, 3])  # routed to `high`
    xsum_id = enqueue("xsum", [[1, 2, 3, 4]])  # routed to `default`
    assert wait_success(add_id)["result"] == 5
    assert wait_success(xsum_id)["result"] == 10

    # Flower saw each task run on the right pool: node names are <pool>@<hostname>.
    add_info = wait_for(lambda: flower_task(add_id), 30, "Flower to report the add task")
    xsum_info = wait_for(lambda: flower_task(xsum_id), 30, "Flower to report the xsum task")
    assert add_info["worker"].startswith("high@"), add_info
    assert xsum_info["worker"].startswith("default@"), xsum_info


def test_flower_requires_basic_auth():
    assert http("GET", f"{FLOWER}/")[0] == 401
    assert http("GET", f"{FLOWER}/api/workers")[0] == 401
    bad = "Basic " + base64.b64encode(b"admin:wrong-password").decode()
    assert http("GET", f"{FLOWER}/", headers={"Authorization": bad})[0] == 401
    assert http("GET", f"{FLOWER}/", headers={"Authorization": FLOWER_AUTH})[0] == 200
    status, raw = http(
        "GET", f"{FLOWER}/api/workers?refresh=1", headers={"Authorization": FLOWER_AUTH}
    )
    assert status == 200
    pools = {name.split("@")[0] for name in json.loads(raw)}
    assert {"default", "high"} <= pools, pools


def test_flower_metrics_require_basic_auth():
    assert http("GET", f"{FLOWER}/metrics")[0] == 401
    status, raw = http("GET", f"{FLOWER}/metrics", headers={"Authorization": FLOWER_AUTH})
    assert status == 200 and b"flower_" in raw
    assert http("GET", f"{FLOWER}/healthcheck")[0] == 200  # the container health check


def test_web_metrics_are_not_on_the_public_port():
    assert http("GET", f"{WEB}/metrics")[0] == 404
    # They are on :9100 inside the stack, for Prometheus (not published on the host).
    out = compose(
        "exec", "-T", "web", "python", "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())",
    )  # fmt: skip
    assert "gunicorn_workers" in out


def test_api_refuses_anonymous_callers():
    status, raw = http("POST", f"{WEB}/api/tasks/add", {"args": [1, 2]}, headers={"Authorization": "Bearer nope"})
    assert status == 401, raw


def test_redis_has_a_maxmemory_below_its_limit():
    # Redis runs on both brokers: on RabbitMQ it keeps the web's rate limits.
    out = compose("exec", "-T", "redis", "redis-cli", "config", "get", "maxmemory*")
    values = out.split()
    assert values[values.index("maxmemory") + 1] == str(400 * 1024 * 1024), out
    assert values[values.index("maxmemory-policy") + 1] == "noeviction", out


def test_exporter_reports_queues_and_workers():
    def scrape():
        status, raw = http("GET", f"{EXPORTER}/metrics")
        assert status == 200
        text = raw.decode()
        queues = metric_samples(text, "celery_queue_length")
        up = metric_samples(text, "celery_worker_up")
        has_queues = any('queue_name="default"' in k for k in queues) and any(
            'queue_name="high"' in k for k in queues
        )
        # one worker per pool in the stack: two workers reporting up
        if has_queues and sum(1 for v in up.values() if v == 1.0) >= 2:
            return queues, up
        return None

    queues, _up = wait_for(
        scrape, 60, "celery_queue_length{default,high} and 2 workers up", interval=2
    )
    assert all(v >= 0 for v in queues.values()), queues
    assert http("GET", f"{EXPORTER}/health")[0] == 200


def test_queue_metrics_runs_from_the_exporter_image():
    assert http("GET", f"{QUEUE_METRICS}/healthz")[0] == 200
    status, raw = http("GET", f"{QUEUE_METRICS}/metrics")
    assert status == 200
    depth = metric_samples(raw.decode(), "celery_queue_depth")
    assert any('queue_name="default"' in k for k in depth), depth
    assert any('queue_name="high"' in k for k in depth), depth


def test_sigterm_to_worker_default_loses_no_task():
    long_id = enqueue("long_job", kwargs={"seconds": 12, "steps": 12})
    wait_for(
        lambda: task_status(long_id)["state"] in ("STARTED", "PROGRESS"), 60, "long_job to start"
    )
    queued = [enqueue("xsum", [[i, i, i]]) for i in range(5)]

    # SIGTERM goes to tini (PID 1), which forwards it to celery: a warm shutdown.
    compose("kill", "-s", "SIGTERM", "worker-default")
    # The worker stops (or the engine's restart policy already brought it back) ...
    wait_for(
        lambda: "Warm shutdown" in compose("logs", "--no-log-prefix", "worker-default"),
        60,
        "worker-default to log a warm shutdown",
    )
    # ... and is started again, as an orchestrator would.
    compose("up", "-d", "--no-deps", "--wait", "worker-default", timeout=240)

    result = wait_success(long_id, timeout=180)["result"]
    assert isinstance(result, dict), result
    for i, task_id in enumerate(queued):
        assert wait_success(task_id, timeout=120)["result"] == 3 * i


def test_queued_tasks_survive_a_broker_crash():
    # Stop the consumer so the tasks stay in the broker.
    compose("stop", "worker-high", timeout=120)
    ids = [enqueue("add", [i, i]) for i in range(20)]
    before = queued("high")
    assert before >= 20, before  # beat may add its own heartbeat tasks to `high`

    # Kill the broker without warning: for Redis there is no shutdown snapshot, so only the AOF
    # can bring the queue back (after the one second `appendfsync everysec` allows); RabbitMQ
    # keeps persistent messages of durable queues. Then start it again.
    time.sleep(1.5)
    compose("kill", "-s", "SIGKILL", BROKER)
    compose("up", "-d", "--no-deps", "--wait", BROKER, timeout=180)
    assert queued("high") >= 20

    compose("up", "-d", "--no-deps", "--wait", "worker-high", timeout=240)
    for i, task_id in enumerate(ids):
        assert wait_success(task_id, timeout=120)["result"] == 2 * i

    # The web tier reconnects to the restarted broker too. Its pooled connections died with the
    # broker, so the first publish may take a few socket timeouts or answer 503 (retry later).
    def enqueue_after_crash():
        status, raw = http("POST", f"{WEB}/api/tasks/add", {"args": [40, 2]})
        assert status in (202, 503), (status, raw[:500])
        return json.loads(raw)["id"] if status == 202 else None

    assert (
        wait_success(wait_for(enqueue_after_crash, 90, "the API to accept tasks again"))["result"]
        == 42
    )
