"""Redis at maxmemory with noeviction refuses writes ("OOM command not allowed"): the API
answers 503 JSON, for the broker and for the rate-limit store, and keeps serving."""

import shutil
import subprocess
import time

import pytest
import redis
import requests

from testsupport import free_port, wait_for

from .support import start_web, start_worker
from .testenv import RATELIMIT_REDIS_URL

pytestmark = [
    pytest.mark.redis_only,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs the redis-server binary"),
]


def redis_server(directory, maxmemory: str = "0"):
    """A real redis-server of the test's own: maxmemory is server-wide, never set it on a shared
    one. Returns (process, url without a database)."""
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--maxmemory", maxmemory,
            "--maxmemory-policy", "noeviction",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: _pings(redis.Redis(port=port)), 20, what="redis-server up")
    return server, f"redis://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def full_redis(tmp_path_factory):
    """A real redis-server with a tiny maxmemory, filled until it refuses writes."""
    server, url = redis_server(tmp_path_factory.mktemp("redis-full"), maxmemory="4mb")
    client = redis.Redis.from_url(url)
    # Large values first, then small ones: a large one can be refused while a small write
    # still fits below the limit.
    for size in (64 * 1024, 1024, 16):
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for n in range(100_000):
                client.set(f"filler:{size}:{n}", b"x" * size)
    yield url
    server.terminate()
    server.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False


def test_full_broker_gets_503_json(full_redis, process_env, log_dir, api):
    web = start_web(
        {**process_env, "CELERY_BROKER_URL": f"{full_redis}/0"}, log_dir, name="web-broker-full"
    )
    try:
        for _ in range(2):
            started = time.monotonic()
            response = api.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "redis_full"
            assert time.monotonic() - started < 10
        assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200
    finally:
        web.stop()


def test_full_rate_limit_store_gets_503_json(full_redis, process_env, log_dir, api):
    assert full_redis not in RATELIMIT_REDIS_URL
    web = start_web(
        {**process_env, "RATELIMIT_REDIS_URL": f"{full_redis}/1"}, log_dir, name="web-limits-full"
    )
    try:
        response = api.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "redis_full"
    finally:
        web.stop()


@pytest.mark.usefixtures("live_db")
def test_a_message_taken_at_the_memory_limit_still_runs(tmp_path, process_env, log_dir):
    """At maxmemory a worker can still pop a message (BRPOP frees memory), but Redis refuses
    the record kombu writes of it as unacked. kombu then dropped the message. The worker now
    runs it without that record: every task popped at the limit succeeds."""
    from celery import states
    from kombu import Connection

    from jobs import tasks

    server, url = redis_server(tmp_path)
    broker_url = f"{url}/0"
    client = redis.Redis.from_url(broker_url)
    worker = None
    try:
        with Connection(broker_url) as conn, conn.Producer() as producer:
            results = [tasks.add.apply_async((i, 1), producer=producer) for i in range(20)]
        # Park them, start a worker, fill Redis, then hand them back: RENAME is not refused at
        # the limit, and the worker's BRPOP takes them as they come.
        client.rename("high", "parked")
        worker = start_worker(
            "at-limit", "high", {**process_env, "CELERY_BROKER_URL": broker_url}, log_dir
        )
        # Started: declaring its queues runs in a MULTI, which Redis refuses at the limit.
        wait_for(lambda: " ready." in worker.log(), 60, what="the worker's consumer started")
        client.config_set("maxmemory", "1")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", "x")
        client.rename("parked", "high")
        wait_for(lambda: client.llen("high") == 0, 30, what="the worker to take every message")
        client.config_set("maxmemory", "0")
        wait_for(
            lambda: all(r.state in states.READY_STATES for r in results),
            60,
            interval=0.5,
            what="every task popped at the limit to finish",
        )
        assert [r.result for r in results] == [i + 1 for i in range(20)]
        assert "memory limit refused the unacked record" in worker.log()
        assert worker.alive()
    finally:
        if worker is not None:
            worker.stop()
        server.terminate()
        server.wait(10)
