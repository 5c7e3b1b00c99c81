"""Crashes, poison messages and lost brokers: nothing is lost and the workers keep going."""

import json
import pickle
import shutil
import signal
import subprocess
import time
import uuid

import pytest
from kombu import Connection, Exchange

from jobs import tasks
from testsupport import free_port, wait_for

from .support import BIN, Process, start_worker, task_outlives_its_whole_worker
from .testenv import scratch_redis_url

pytestmark = pytest.mark.usefixtures("live_db")


def state_is(result, state):
    return lambda: result.state == state


def test_worker_process_killed_mid_task_is_redelivered(workers):
    """acks_late + reject_on_worker_lost: an OOM-killed pool process means "run again"."""
    default = workers["default"]
    result = tasks.long_job.apply_async(kwargs={"seconds": 4, "steps": 8})
    wait_for(state_is(result, "PROGRESS"), 20, what="long_job running")
    for child in default.children():
        subprocess.run(["kill", "-KILL", str(child)], check=False)
    outcome = result.get(timeout=60)
    assert outcome["steps"] == 8
    assert default.log().count(f"long_job[{result.id}] received") >= 2
    assert "WorkerLostError" in default.log()
    assert default.alive()


@pytest.mark.redis_only
def test_whole_worker_sigkilled_task_comes_back_after_visibility_timeout(process_env, log_dir):
    """The worker and its pool die at once (node lost): Redis redelivers after the timeout."""
    url = scratch_redis_url(2)
    env = {
        **process_env,
        "CELERY_BROKER_URL": url,
        "CELERY_BROKER_VISIBILITY_TIMEOUT": "12",
        "CELERY_TASK_SOFT_TIME_LIMIT": "8",
        "CELERY_TASK_TIME_LIMIT": "9",
        "API_MAX_COUNTDOWN": "2",
    }
    with Connection(url) as conn:
        conn.default_channel.client.flushdb()
    task_outlives_its_whole_worker("vt", env, log_dir, lambda: Connection(url))


@pytest.mark.redis_only  # its own Redis database keeps the shared workers off its messages
def test_pool_process_keeps_its_database_connection_and_replaces_a_dropped_one(
    process_env, log_dir
):
    """One Postgres connection per pool process, reused across tasks (CELERY_DB_REUSE_MAX), not a
    new one per task; when the server drops it, the next task gets a fresh one and succeeds."""
    from django.db import connection

    url = scratch_redis_url(3)
    app_name = f"db-reuse-{uuid.uuid4().hex[:8]}"  # libpq's PGAPPNAME tags this worker's backends

    def worker_backends():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [app_name]
            )
            return {pid for (pid,) in cursor.fetchall()}

    def run_tasks(n):
        with Connection(url) as conn, conn.Producer() as producer:
            results = [tasks.count_widgets.apply_async(producer=producer) for _ in range(n)]
        return [result.get(timeout=30) is not None for result in results]

    with Connection(url) as conn:
        conn.default_channel.client.flushdb()
    env = {**process_env, "CELERY_BROKER_URL": url, "PGAPPNAME": app_name}
    worker = start_worker("db-reuse", "default", env, log_dir, concurrency=1)
    try:
        before = worker_backends()  # the main process's, if any
        assert all(run_tasks(5))
        time.sleep(0.5)  # past the task_postrun handlers
        pool_backends = worker_backends() - before
        assert len(pool_backends) == 1, "the pool process should keep one connection open"
        assert all(run_tasks(5))
        time.sleep(0.5)
        assert worker_backends() - before == pool_backends, "reused, not reconnected"

        with connection.cursor() as cursor:
            for pid in pool_backends:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert all(run_tasks(5))
        assert "OperationalError" not in worker.log()
    finally:
        worker.stop()


def raw_publish(conn, body, content_type, task="jobs.tasks.add"):
    from config.celery import app

    with conn.Producer() as producer:
        producer.publish(
            body,
            exchange=Exchange("high", type="direct"),
            routing_key="high",
            # SQS keeps exchange bindings in the process (kombu's virtual transport): bind first.
            declare=[app.amqp.queues["high"]],
            content_type=content_type,
            content_encoding="utf-8" if content_type == "application/json" else "binary",
            headers={"task": task, "id": str(uuid.uuid4()), "lang": "py", "argsrepr": "()"},
        )


def test_poison_messages_are_rejected_and_consumption_continues(workers, celery_app):
    high = workers["high"]
    valid_body = [[1, 2], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    with celery_app.connection_for_write() as conn:
        raw_publish(
            conn, json.dumps(valid_body), "application/json", task="jobs.tasks.does_not_exist"
        )
        raw_publish(conn, b"{this is not json", "application/json")
        raw_publish(conn, pickle.dumps(valid_body), "application/x-python-serialize")

    assert tasks.add.delay(20, 22).get(timeout=20) == 42

    def queue_empty():
        with celery_app.connection_for_write() as conn:
            try:
                declared = conn.default_channel.queue_declare("high", passive=True)
            except conn.channel_errors:
                return True  # Redis: an empty list does not exist
            return declared.message_count == 0

    wait_for(queue_empty, 20, what="high queue drained")
    log = wait_for(
        lambda: (lambda text: text if "ContentDisallowed" in text or "untrusted" in text else None)(
            high.log()
        ),
        10,
        what="pickle rejection logged",
    )
    assert "jobs.tasks.does_not_exist" in log
    assert "decode" in log.lower()
    assert high.alive()


def test_heartbeat_check_script(tmp_path):
    heartbeat = tmp_path / "hb"
    check = [str(BIN / "heartbeat-check"), str(heartbeat), "5"]
    missing = subprocess.run(check, capture_output=True, text=True)
    assert missing.returncode == 1
    assert "no heartbeat file" in missing.stderr
    heartbeat.touch()
    assert subprocess.run(check, capture_output=True).returncode == 0
    old = time.time() - 60
    import os

    os.utime(heartbeat, (old, old))
    stale = subprocess.run(check, capture_output=True, text=True)
    assert stale.returncode == 1
    assert "last heartbeat" in stale.stderr


@pytest.mark.redis_only
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs a redis-server binary")
def test_heartbeat_stops_while_the_broker_is_gone_and_resumes(process_env, log_dir, tmp_path):
    """Liveness proves the consumer can consume, not merely that the process exists."""
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    redis = Process("hb-redis", argv, {}, log_dir)
    env = {**process_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    wait_for(lambda: "Ready to accept" in redis.log(), 10, what="redis-server up")
    worker = start_worker("hb-worker", "default", env, log_dir, concurrency=1)
    check = [str(BIN / "heartbeat-check"), str(worker.heartbeat), "3"]
    try:
        assert subprocess.run(check, capture_output=True).returncode == 0
        redis.popen.send_signal(signal.SIGKILL)
        redis.stop()
        wait_for(
            lambda: subprocess.run(check, capture_output=True).returncode == 1,
            20,
            what="heartbeat to go stale without a broker",
        )
        assert worker.alive()
        redis = Process("hb-redis", argv, {}, log_dir)
        wait_for(
            lambda: subprocess.run(check, capture_output=True).returncode == 0,
            60,
            interval=0.5,
            what="heartbeat to resume after the broker returns",
        )
    finally:
        worker.stop()
        redis.stop()
