"""A pool added under workers.pools works end to end: declared, routed, scaled, alerted, consumed.

The last test starts a REAL Celery worker (services/app, through uv) with the environment the
chart renders for the new pool, against the real broker and database of this host, and sees
it run a task routed to the new queue. Broker: TEST_AMQP_URL (default), or TEST_REDIS_URL with
TEST_BROKER=redis; database: TEST_DATABASE_URL (migrated here).
"""
import json
import os
import secrets
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, env_of, pod_spec, render, render_error

APP = ROOT / "services" / "app"
REPORTS = {
    "queues": ["reports"],
    "routes": ["jobs.tasks.xsum"],
    "concurrency": 1,
    "softTimeLimit": 100,
    "timeLimit": 120,
    "alerts": {"tier": "high", "queueDepth": 10, "waitP95Seconds": 60, "oldestMessageSeconds": 120},
}
WITH_REPORTS = {"workers.pools.reports": REPORTS, "monitoring.prometheusRule.enabled": True}
FULL = "rel-celery-stack-worker-reports"


def config(docs):
    return docs.get("ConfigMap", "rel-celery-stack")["data"]


def test_new_pool_is_declared_and_routed_for_every_process():
    docs = render(set_values=WITH_REPORTS)
    data = config(docs)
    assert data["CELERY_TASK_QUEUES"].split(",") == ["default", "high", "reports"]
    routes = json.loads(data["CELERY_TASK_ROUTES"])
    assert routes["jobs.tasks.xsum"] == "reports"
    assert routes["jobs.tasks.add"] == "high"
    # web, beat and the migrations read the same ConfigMap: every publisher knows the route.
    for name in ("rel-celery-stack-web", "rel-celery-stack-beat", FULL):
        refs = [e["configMapRef"]["name"] for e in pod_spec(docs.get("Deployment", name))["containers"][0]["envFrom"]]
        assert refs == ["rel-celery-stack"], name


def test_new_pool_gets_its_worker_pdb_and_derived_grace_period():
    docs = render(set_values=WITH_REPORTS)
    dep = docs.get("Deployment", FULL)
    env = env_of(pod_spec(dep)["containers"][0])
    assert env["CELERY_WORKER_QUEUES"]["value"] == "reports"
    assert env["CELERY_WORKER_PREFETCH_MULTIPLIER"]["value"] == "1"
    assert pod_spec(dep)["terminationGracePeriodSeconds"] == 150  # timeLimit 120 + 30
    pdb = docs.get("PodDisruptionBudget", FULL)
    assert pdb["spec"]["selector"]["matchLabels"]["celery-stack/pool"] == "reports"
    exporter = pod_spec(docs.get("Deployment", "rel-celery-stack-exporter"))["containers"]
    assert "reports" in env_of(exporter[0])["CE_QUEUES"]["value"].split(",")
    assert json.loads(env_of(exporter[1])["METRICS_POOLS"]["value"])["reports"] == {
        "queues": ["reports"], "concurrency": 1}


@pytest.mark.parametrize("kind,obj", [("keda", "ScaledObject"), ("hpa", "HorizontalPodAutoscaler")])
def test_new_pool_gets_its_autoscaler(kind, obj):
    docs = render(set_values={"workers.pools.reports": {**REPORTS, "autoscaling": {"type": kind, "maxReplicas": 3}}})
    scaler = docs.get(obj, FULL)
    assert scaler["spec"]["scaleTargetRef"]["name"] == FULL
    assert scaler["spec"].get("maxReplicaCount", scaler["spec"].get("maxReplicas")) == 3


def test_new_pool_gets_its_alert_thresholds():
    docs = render(set_values=WITH_REPORTS)
    [rule] = [r for r in docs.of("PrometheusRule") if r["metadata"]["name"].endswith("-celery-stack-pools")]
    got = {(r["record"], r["labels"]["queue_name"]): (r["expr"], r["labels"]["tier"])
           for g in rule["spec"]["groups"] for r in g["rules"]}
    assert got[("queue_name:celery_queue_depth:alert_threshold", "reports")] == ("vector(10)", "high")
    assert got[("queue_name:celery_queue_wait_time_seconds:p95_alert_threshold", "reports")] == ("vector(60)", "high")
    assert got[("queue_name:celery_queue_oldest_message_age_seconds:alert_threshold", "reports")] == ("vector(120)", "high")
    assert got[("queue_name:celery_queue_depth:alert_threshold", "default")] == ("vector(1000)", "default")


def test_conflicting_pools_are_refused_at_render():
    err = render_error(set_values={"workers.pools.reports": {**REPORTS, "routes": ["jobs.tasks.add"]}})
    assert "jobs.tasks.add is already routed to pool high" in err
    err = render_error(set_values={"workers.pools.reports": {**REPORTS, "queues": ["high"]}})
    assert "high is consumed by another enabled pool" in err
    err = render_error(set_values={"workers.pools.default.enabled": False})
    assert "no enabled pool consumes the `default` queue" in err


# ---------------------------------------------------------------- a real worker

BROKER = os.environ.get("TEST_BROKER", "amqp")
BROKER_URL = (os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1") if BROKER == "redis"
              else os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/celery_stack")
UV = shutil.which("uv")


def rendered_env(docs, deployment, tmp_path):
    """What the pod's container would see: the ConfigMap, its literal env, and the Secret's
    keys (DJANGO_SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL) pointed at this host."""
    container = pod_spec(docs.get("Deployment", deployment))["containers"][0]
    env = dict(config(docs))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    secret_refs = {e["name"] for e in container.get("env", []) if "valueFrom" in e}
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= secret_refs
    env.update({
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        # The pod's /tmp is its own emptyDir; here /tmp is shared with other processes.
        "CELERY_HEARTBEAT_FILE": str(tmp_path / f"{deployment}.heartbeat"),
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
    })
    return env


def app_run(args, env, **kw):
    return subprocess.run([UV, "run", "--locked", "--quiet", *args], cwd=APP, env=env,
                          capture_output=True, text=True, **kw)


CREATE_DATABASE = """
import os, psycopg
from urllib.parse import urlsplit
url = urlsplit(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(f'CREATE DATABASE "{name}"')
"""

# A `reports` queue left by an earlier run may have been declared with other arguments (before
# the dead-letter exchange, say); the broker then refuses the worker's declaration
# (PRECONDITION_FAILED). The test starts from no such queue.
DELETE_STALE_QUEUE = """
import os
from kombu import Connection
with Connection(os.environ["CELERY_BROKER_URL"]) as conn:
    conn.default_channel.queue_delete("reports")
"""

PUBLISH = """
import django, json, sys
django.setup()
from django_celery_results.models import TaskResult
from jobs.tasks import xsum
result = xsum.delay([1, 2, 3.5])
value = result.get(timeout=90)
row = TaskResult.objects.get(task_id=result.id)
print(json.dumps({"value": value, "worker": row.worker}))
"""


@pytest.mark.skipif(UV is None, reason="uv is needed to run the app (make uv)")
def test_rendered_new_pool_runs_a_real_worker_that_consumes_its_routed_task(tmp_path):
    docs = render(set_values=WITH_REPORTS)
    worker_env = rendered_env(docs, FULL, tmp_path)
    publisher_env = {**rendered_env(docs, "rel-celery-stack-web", tmp_path),
                     "DJANGO_SETTINGS_MODULE": "config.settings"}
    created = app_run(["python", "-c", CREATE_DATABASE], publisher_env, timeout=60)
    assert created.returncode == 0, created.stderr[-3000:]
    migrated = app_run(["python", "manage.py", "migrate", "--no-input"], publisher_env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    # Before the fix, this worker died with ImproperlyConfigured: the app declared no
    # `reports` queue. Without the rendered CELERY_TASK_QUEUES it must still refuse, clearly.
    refused = app_run(["bin/worker"], {**worker_env, "CELERY_TASK_QUEUES": "default,high"}, timeout=120)
    assert refused.returncode != 0
    assert "CELERY_WORKER_QUEUES names ['reports']" in refused.stderr + refused.stdout

    deleted = app_run(["python", "-c", DELETE_STALE_QUEUE], worker_env, timeout=60)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    log = open(tmp_path / "worker.log", "w")
    # Only the new pool's worker runs: a task routed anywhere else would never finish.
    worker = subprocess.Popen([UV, "run", "--locked", "--quiet", "bin/worker"], cwd=APP, env=worker_env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        heartbeat = tmp_path / f"{FULL}.heartbeat"
        deadline = time.monotonic() + 90
        while not heartbeat.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert heartbeat.exists(), (tmp_path / "worker.log").read_text()[-3000:]

        published = app_run(["python", "-c", PUBLISH], publisher_env, timeout=150)
        assert published.returncode == 0, published.stderr[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
        outcome = json.loads(published.stdout.strip().splitlines()[-1])
        assert outcome["value"] == 6.5
        assert outcome["worker"].startswith("reports@"), outcome
    finally:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait(10)
        log.close()
