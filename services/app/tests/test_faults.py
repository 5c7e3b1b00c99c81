"""Faults that production brings, made with a real TCP proxy between a real worker and Postgres
or Redis (tests/faults.py): nothing accepted is lost, and no worker stays wedged.

Each test runs its own worker on its own Redis database, so the session's workers never take
its messages; `make chaos` repeats these faults on the Compose stack, on both brokers.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import requests
from celery import states
from kombu import Connection

from jobs import tasks
from testsupport import wait_for

from .faults import FaultyProxy, through
from .support import BIN, start_web, start_worker
from .testenv import scratch_redis_url

pytestmark = [pytest.mark.usefixtures("live_db"), pytest.mark.redis_only]


@pytest.fixture
def broker_url():
    return scratch_redis_url(3, empty=True)


def behind_database_proxy(process_env, broker_url):
    """A worker environment whose database connections go through a FaultyProxy."""
    proxy = FaultyProxy(urlsplit(process_env["DATABASE_URL"]).port or 5432)
    env = {
        **process_env,
        "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": through(proxy, process_env["DATABASE_URL"]),
        "DATABASE_PROBE_INTERVAL": "1",
    }
    return proxy, env


def behind_broker_proxy(process_env, broker_url):
    """A worker environment whose Redis connections go through a FaultyProxy; a stalled worker
    exits after 20 s."""
    proxy = FaultyProxy(urlsplit(broker_url).port or 6379)
    env = {
        **process_env,
        "CELERY_BROKER_URL": through(proxy, broker_url),
        "CELERY_WORKER_STALL_SECONDS": "20",
    }
    return proxy, env


def publish(url, count_add=30, count_long=4, **options):
    with Connection(url) as conn, conn.Producer() as producer:
        adds = [
            tasks.add.apply_async((i, 1000), producer=producer, **options) for i in range(count_add)
        ]
        longs = [
            tasks.long_job.apply_async(
                kwargs={"seconds": 2, "steps": 4}, producer=producer, **options
            )
            for _ in range(count_long)
        ]
    return adds, longs


def finished(results):
    return lambda: all(result.state in states.READY_STATES for result in results)


def test_database_restart_requeues_pauses_and_resumes(process_env, log_dir, broker_url):
    """Postgres gone for longer than a task's retry budget: the writes are retried, the tasks
    that still cannot record go back to the queue, the worker stops consuming, and it resumes
    by itself. Every task succeeds; none is acknowledged without a result."""
    proxy, env = behind_database_proxy(process_env, broker_url)
    worker = start_worker("db-restart", "default,high", env, log_dir, pool="faults")
    try:
        adds, longs = publish(broker_url)
        wait_for(lambda: sum(r.state == states.SUCCESS for r in adds) >= 3, 30, what="some done")
        proxy.down()
        # Testenv's soft limit is 20 s, so a task retries its write for 18 s, then is requeued.
        wait_for(lambda: "consuming paused" in worker.log(), 40, what="the gate to close")
        time.sleep(5)
        proxy.heal()
        wait_for(finished(adds + longs), 120, interval=0.5, what="every task to finish")
        assert [r.result for r in adds] == [i + 1000 for i in range(len(adds))]
        assert all(r.state == states.SUCCESS for r in longs)
        log = worker.log()
        assert "consuming resumed" in log
        assert "result not recorded, task requeued" in log
        assert "Exception raised outside body" not in log
        assert worker.alive()
    finally:
        worker.stop()


def test_database_partition_does_not_wedge_the_event_loop(process_env, log_dir, broker_url):
    """The database stops answering mid-burst while expired messages arrive. Celery records an
    expired task from the worker's main process; here that write runs off the event loop, so
    the worker keeps consuming, and every task ends up recorded once the database answers."""
    proxy, env = behind_database_proxy(process_env, broker_url)
    worker = start_worker("db-partition", "default,high", env, log_dir, pool="faults")
    try:
        proxy.blackhole()
        past = datetime.now(UTC) - timedelta(seconds=5)
        with Connection(broker_url) as conn, conn.Producer() as producer:
            expired = [
                tasks.add.apply_async((i, 0), producer=producer, expires=past) for i in range(10)
            ]
            # Each would have held the event loop for a connect timeout (5 s) or forever: the
            # main process keeps consuming instead, and takes all ten off the queue at once.
            wait_for(
                lambda: conn.default_channel.client.llen("high") == 0,
                10,
                what="the event loop to take the expired messages",
            )
        proxy.heal()
        wait_for(finished(expired), 60, interval=0.5, what="the expired tasks recorded")
        assert {r.state for r in expired} == {states.REVOKED}
        adds, longs = publish(broker_url, count_add=20, count_long=2)
        wait_for(finished(adds + longs), 90, interval=0.5, what="a burst after the partition")
        assert all(r.state == states.SUCCESS for r in adds + longs)
        assert worker.alive()
    finally:
        worker.stop()


@pytest.mark.parametrize("heal_after", [30])
def test_broker_partition_then_burst(process_env, log_dir, broker_url, heal_after):
    """Redis goes silent for longer than every health-check interval, then comes back and gets a
    burst: the worker consumes all of it, at its normal pace."""
    proxy, env = behind_broker_proxy(process_env, broker_url)
    worker = start_worker("broker-partition", "default,high", env, log_dir, pool="faults")
    try:
        proxy.blackhole()
        time.sleep(heal_after)
        proxy.heal()
        time.sleep(5)
        adds, longs = publish(broker_url, count_add=60, count_long=2)
        wait_for(finished(adds + longs), 90, interval=0.5, what="the burst after the partition")
        assert all(r.state == states.SUCCESS for r in adds + longs)
    finally:
        worker.stop()
        proxy.down()


def test_worker_that_stops_consuming_exits_to_be_replaced(process_env, log_dir, broker_url):
    """Liveness means progress: a worker with free slots that takes nothing while its queue
    holds messages is stalled. It shuts down warm (its restart policy replaces it) and its
    messages stay in the queue for the next worker."""
    env = {
        **process_env,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_WORKER_STALL_SECONDS": "4",
    }
    worker = start_worker("stalled", "high", env, log_dir, pool="stalled")
    try:
        # What a consumer wedged by a reconnect looks like: connected, ticking, not taking.
        cancel = subprocess.run(
            [
                f"{os.path.dirname(sys.executable)}/celery",
                "-A",
                "config",
                "control",
                "cancel_consumer",
                "high",
            ],
            cwd=BIN.parent,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "no longer consuming from high" in cancel.stdout, cancel.stdout + cancel.stderr
        with Connection(broker_url) as conn:
            with conn.Producer() as producer:
                waiting = [tasks.add.apply_async((i, 1), producer=producer) for i in range(5)]
        wait_for(lambda: not worker.alive(), 60, what="the stalled worker to exit")
        assert "worker makes no progress" in worker.log()
        assert "5 messages wait in high" in worker.log()
        replacement = start_worker("replacement", "high", env, log_dir, pool="stalled")
        try:
            wait_for(finished(waiting), 30, what="the replacement to run the waiting tasks")
            assert [r.result for r in waiting] == [i + 1 for i in range(5)]
        finally:
            replacement.stop()
    finally:
        worker.stop()


def test_a_held_countdown_task_is_not_redelivered_but_a_dead_workers_is(
    process_env, log_dir, broker_url
):
    """Leases: a live worker renews the messages it holds, so a countdown longer than the
    visibility timeout runs once; a worker killed outright stops renewing, and its message
    comes back after the visibility timeout."""
    env = {
        **process_env,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BROKER_VISIBILITY_TIMEOUT": "10",
        "CELERY_TASK_SOFT_TIME_LIMIT": "6",
        "CELERY_TASK_TIME_LIMIT": "8",
    }
    worker = start_worker("lease", "high", env, log_dir, pool="lease")
    try:
        with Connection(broker_url) as conn, conn.Producer() as producer:
            held = tasks.add.apply_async((1, 2), countdown=25, producer=producer)
        assert held.get(timeout=60) == 3
        time.sleep(12)  # a redelivered copy would have been restored and run by now
        assert worker.log().count(f"add[{held.id}] received") == 1
    finally:
        worker.stop()

    first = start_worker("lease-killed", "high", env, log_dir, pool="lease")
    with Connection(broker_url) as conn, conn.Producer() as producer:
        orphan = tasks.add.apply_async((2, 2), countdown=8, producer=producer)
    wait_for(lambda: f"add[{orphan.id}] received" in first.log(), 15, what="the task held")
    subprocess.run(["pkill", "-KILL", "-g", str(first.pid)], check=False)
    first.popen.send_signal(signal.SIGKILL)
    first.stop()
    second = start_worker("lease-second", "high", env, log_dir, pool="lease")
    try:
        assert orphan.get(timeout=60) == 4
        assert f"add[{orphan.id}] received" in second.log()
    finally:
        second.stop()


def test_api_answers_503_quickly_when_the_database_goes_silent(
    process_env, log_dir, broker_url, api_token
):
    """A frozen or partitioned Postgres acknowledges packets and answers nothing: no TCP bound
    fires. The API gives the database API_DATABASE_DEADLINE (3 s), then answers 503, and serves
    normally once the database is back."""
    import requests

    proxy, env = behind_database_proxy(process_env, broker_url)
    # One process, one thread: the request below reuses the connection the first one opened,
    # so it is the deadline, not the connect timeout (2 s), that ends the wait.
    web = start_web({**env, "GUNICORN_THREADS": "1"}, log_dir, name="web-db-silent", workers=1)
    headers = {"Authorization": f"Bearer {api_token}"}
    task_id = "8d5b8a66-3d0c-4c55-9e6f-1b1a35f0c0de"
    try:
        assert requests.get(f"{web.url}/api/tasks/{task_id}", headers=headers, timeout=10).ok
        proxy.blackhole()
        started = time.monotonic()
        response = requests.get(f"{web.url}/api/tasks/{task_id}", headers=headers, timeout=30)
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
        assert took < 6, f"the API took {took:.1f}s with a silent database"
        proxy.heal()
        wait_for(
            lambda: requests.get(f"{web.url}/api/tasks/{task_id}", headers=headers, timeout=10).ok,
            30,
            what="the API to serve again",
        )
    finally:
        web.stop()
        proxy.down()


def test_api_rides_out_a_database_that_refuses_for_a_moment(
    process_env, log_dir, broker_url, api_token
):
    """A connect refused for under a second (Postgres restarting, a resolver reloading) is
    tried again, so a request that opens a new connection then is served, not answered 503."""
    import threading

    import requests

    proxy, env = behind_database_proxy(process_env, broker_url)
    # No reused connections: every request opens one, so each meets the refusal.
    web = start_web(
        {**env, "GUNICORN_THREADS": "1", "DATABASE_CONN_MAX_AGE": "0"},
        log_dir,
        name="web-db-refuses",
        workers=1,
    )
    headers = {"Authorization": f"Bearer {api_token}"}
    task_id = "5f0c2a4e-9b1d-4e27-8c61-2d8e7a9b3c10"
    try:
        assert requests.get(f"{web.url}/api/tasks/{task_id}", headers=headers, timeout=10).ok
        for _ in range(3):
            proxy.down()
            threading.Timer(0.6, proxy.heal).start()
            response = requests.get(f"{web.url}/api/tasks/{task_id}", headers=headers, timeout=30)
            assert response.status_code == 200, response.text
        assert "database connect failed, retrying" in web.log()
    finally:
        web.stop()
        proxy.down()


def test_api_recovers_at_once_when_the_rate_limit_store_forgot_its_connections(
    process_env, log_dir, broker_url, api
):
    """After a network partition the rate-limit Redis may have forgotten the connections the web
    pooled before it: they stay open and silent. Each request that took one timed out and was
    answered 503 (make chaos, broker-partition). Now a timed-out command leaves the counting to the
    process for a few seconds (config/ratelimit_store.py), so the request is served; and the wait
    does not count against the database deadline, which bounds time spent in the database only."""
    from .testenv import RATELIMIT_REDIS_URL

    proxy = FaultyProxy(urlsplit(RATELIMIT_REDIS_URL).port or 6379)
    env = {**process_env, "CELERY_BROKER_URL": broker_url,
           "RATELIMIT_REDIS_URL": through(proxy, RATELIMIT_REDIS_URL)}  # fmt: skip
    # A database deadline shorter than the 2 s the stranded connection costs: only time spent in
    # the database counts against it, so the wait on Redis must not fail the request.
    web = start_web(
        {**env, "GUNICORN_THREADS": "1", "API_DATABASE_DEADLINE": "1"},
        log_dir,
        name="web-store-forgot",
        workers=1,
    )
    try:
        assert api.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30).ok
        proxy.strand()
        for _ in range(3):
            response = api.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30)
            assert response.status_code == 202, response.text
    finally:
        web.stop()
        proxy.down()


def test_signup_answers_while_the_rate_limit_store_is_down_and_its_limit_still_holds(
    process_env, log_dir, broker_url, live_db
):
    """On a Redis stack the rate-limit store is the broker's Redis: a broker outage took signup
    down with it (503), although signup queues its mail through the outbox and needs no broker.
    While the store is unreachable each process counts on its own: signups are answered, and
    the limit still holds. Once the store answers again the counts are shared again."""
    import redis

    from .testenv import RATELIMIT_REDIS_URL

    proxy = FaultyProxy(urlsplit(RATELIMIT_REDIS_URL).port or 6379)
    prefix = f"fallback-{uuid.uuid4().hex[:8]}"
    env = {
        **process_env,
        "CELERY_BROKER_URL": broker_url,
        "RATELIMIT_SIGNUP_PER_IP": "3/h",
        "RATELIMIT_KEY_PREFIX": prefix,
        "RATELIMIT_REDIS_URL": through(proxy, RATELIMIT_REDIS_URL),
    }
    # One process, so its own counts are the whole limit.
    web = start_web(env, log_dir, name="web-store-down", workers=1)
    tag = uuid.uuid4().hex[:8]

    def signup(i):
        name = f"fb-{tag}-{i}"
        body = {"username": name, "email": f"{name}@example.com", "password": f"pw-{tag}-long"}
        return requests.post(f"{web.url}/api/signup", json=body, timeout=30)

    try:
        proxy.down()
        answers = [signup(i) for i in range(4)]
        assert [r.status_code for r in answers] == [201, 201, 201, 429], [r.text for r in answers]
        assert "Retry-After" in answers[3].headers
        from django.contrib.auth.models import User

        assert User.objects.filter(username__startswith=f"fb-{tag}-").count() == 3
        assert "rate-limit store unreachable" in web.log()

        proxy.heal()
        time.sleep(6)  # the store is tried again 5 s after it failed
        assert signup(4).status_code == 201
        store = redis.Redis.from_url(RATELIMIT_REDIS_URL)
        assert store.keys(f"{prefix}:*"), "counts are back in the shared store"
    finally:
        web.stop()
        proxy.down()


def test_broker_restart_mid_task_runs_it_again_once(process_env, log_dir, broker_url):
    """Redis restarts while long_job runs. The running copy can no longer be acknowledged, so
    the worker cancels it and, once reconnected, releases its lease: the task runs again within
    seconds (not after the 60 s visibility timeout) and succeeds exactly once."""
    proxy = FaultyProxy(urlsplit(broker_url).port or 6379)
    env = {**process_env, "CELERY_BROKER_URL": through(proxy, broker_url)}
    worker = start_worker("broker-restart", "default", env, log_dir, pool="faults")
    try:
        with Connection(broker_url) as conn, conn.Producer() as producer:
            job = tasks.long_job.apply_async(kwargs={"seconds": 6, "steps": 12}, producer=producer)
        wait_for(lambda: job.state == "PROGRESS", 20, what="long_job running")
        proxy.down()
        time.sleep(3)
        proxy.heal()
        started = time.monotonic()
        assert job.get(timeout=45)["steps"] == 12
        assert time.monotonic() - started < 40
        assert worker.log().count(f"long_job[{job.id}] succeeded") == 1
    finally:
        worker.stop()
        proxy.down()


def test_a_redelivered_task_that_already_succeeded_is_not_run_again(
    process_env, log_dir, broker_url
):
    """A run that finished but could not acknowledge (the connection dropped first) comes back
    redelivered. Its SUCCESS is recorded, so the worker acknowledges it without running it."""
    worker = start_worker("redelivered", "high", {**process_env, "CELERY_BROKER_URL": broker_url},
                          log_dir, pool="faults")  # fmt: skip
    try:
        with Connection(broker_url) as conn, conn.Producer() as producer:
            first = tasks.add.apply_async((20, 22), producer=producer)
            assert first.get(timeout=30) == 42
            # The same message again, as the broker redelivers it.
            again = tasks.add.apply_async(
                (20, 22), task_id=first.id, producer=producer, headers={"redelivered": True}
            )
        wait_for(lambda: "redelivered after it succeeded" in worker.log(), 30, what="the skip")
        assert again.get(timeout=5) == 42
        assert worker.log().count(f"add[{first.id}] succeeded") == 1
    finally:
        worker.stop()


def test_broker_freeze_mid_task_runs_each_task_once(process_env, log_dir, broker_url):
    """Redis stops answering (frozen, connections left open) while long_jobs run and more wait.
    Every task runs to completion exactly once: the running ones are not run a second time
    beside (or after) their first run."""
    proxy, env = behind_broker_proxy(process_env, broker_url)
    worker = start_worker("broker-freeze", "default", env, log_dir, pool="faults")
    try:
        with Connection(broker_url) as conn, conn.Producer() as producer:
            longs = [
                tasks.long_job.apply_async(kwargs={"seconds": 2, "steps": 4}, producer=producer)
                for _ in range(6)
            ]
        wait_for(lambda: any(r.state == "PROGRESS" for r in longs), 20, what="long_job running")
        proxy.blackhole()
        time.sleep(40)
        proxy.heal()
        logs = []
        deadline = time.monotonic() + 150
        while not finished(longs)() and time.monotonic() < deadline:
            if not worker.alive():  # the watchdog's exit: a restart policy starts it again
                logs.append(worker.log())
                worker = start_worker("broker-freeze-2", "default", env, log_dir, pool="faults")
            time.sleep(0.5)
        assert all(r.state == states.SUCCESS for r in longs), [r.state for r in longs]
        time.sleep(5)  # a second run, if any, would log now
        log = "".join(logs) + worker.log()
        runs = {r.id: log.count(f"long_job[{r.id}] succeeded") for r in longs}
        assert all(n == 1 for n in runs.values()), runs
    finally:
        worker.stop()
        proxy.down()
