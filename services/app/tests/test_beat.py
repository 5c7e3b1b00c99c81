"""One beat sends: a second beat stands by, and takes over when the first one dies; a stopped
beat exits cleanly whatever it was doing.

Real beat processes (bin/beat) on the test database. The lease test publishes to a Redis database
of its own that no worker reads, so every message they send can be counted there.
"""

import itertools
import json
import signal
import time
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from testsupport import wait_for

from .faults import FaultyProxy, through
from .support import start_beat
from .testenv import scratch_redis_url

pytestmark = pytest.mark.usefixtures("live_db")

LEASE = 6  # seconds; production default 30
NAME = "beat-lease-test"
TAKEOVER_SLACK = 4  # the standby's retry (2 s) and a tick


@pytest.fixture
def broker_url():
    return scratch_redis_url(4, empty=True)


@pytest.fixture
def every_second():
    """A periodic task sent every second, to `high`."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    task = PeriodicTask.objects.create(
        name=NAME, task="jobs.tasks.add", args=json.dumps([1, 2]),
        interval=interval, queue="high",
    )  # fmt: skip
    yield task
    task.delete()


def sends(broker_url) -> list[float]:
    """When beat sent each of our periodic tasks (the sent-at header), oldest first."""
    with Connection(broker_url) as conn:
        client = conn.default_channel.client
        stamps = []
        for raw in client.lrange("high", 0, -1):
            message = json.loads(raw)
            headers = message["headers"]
            if headers.get("periodic_task_name") == NAME:
                stamps.append(float(headers["published_at"]))
    return sorted(stamps)


@pytest.mark.redis_only
def test_two_beats_send_once_and_the_standby_takes_over(
    process_env, log_dir, broker_url, every_second
):
    env = {**process_env, "CELERY_BROKER_URL": broker_url, "CELERY_BEAT_LEASE_SECONDS": str(LEASE)}
    first = start_beat("beat-a", env, log_dir)
    second = start_beat("beat-b", env, log_dir)
    try:
        wait_for(lambda: len(sends(broker_url)) >= 2, 30, what="the first sends")
        start = time.time()
        time.sleep(15)
        window = [t for t in sends(broker_url) if start <= t < start + 15]
        # One beat: one send a second. Two beats would send about 30.
        assert 12 <= len(window) <= 17, len(window)
        assert min(b - a for a, b in itertools.pairwise(window)) > 0.5, window

        logs = {p.name: p.log() for p in (first, second)}
        holder = next(p for p in (first, second) if "beat lease taken" in logs[p.name])
        standby = second if holder is first else first
        assert "standing by" in logs[standby.name]
        assert "beat lease taken" not in logs[standby.name]

        holder.popen.kill()  # SIGKILL: no release, the lease has to expire
        killed_at = time.time()
        wait_for(lambda: "beat lease taken" in standby.log(), LEASE + 10, what="the takeover")
        wait_for(lambda: sends(broker_url)[-1] > killed_at + 1, 20, what="sends after it")
        after = [t for t in sends(broker_url) if t > killed_at]
        assert after[0] - killed_at <= LEASE + TAKEOVER_SLACK, after[0] - killed_at
        time.sleep(6)
        after = [t - killed_at for t in sends(broker_url) if t > killed_at]
        assert len(after) >= 5, after  # the new holder sends every second
        assert min(b - a for a, b in itertools.pairwise(after)) > 0.5, after
    finally:
        first.stop()
        second.stop()


def test_beat_stopped_while_waiting_on_the_database_finishes_the_call_and_exits_cleanly(
    process_env, log_dir
):
    """SIGTERM reaching beat in the middle of a database call. Celery's own handler saved the
    schedule from inside the signal handler, on the connection whose lock the interrupted call
    held: beat hung until it was killed (seen in CI on RabbitMQ, right after a send)."""
    from jobs.models import BeatLease

    proxy = FaultyProxy(urlsplit(process_env["DATABASE_URL"]).port or 5432)
    env = {
        **process_env,
        "DATABASE_URL": through(proxy, process_env["DATABASE_URL"]),
        "CELERY_BEAT_LEASE_SECONDS": str(LEASE),
    }
    beat = start_beat("beat-stop", env, log_dir)
    heartbeat = log_dir / "beat-stop.heartbeat"
    try:
        wait_for(lambda: "beat lease taken" in beat.log(), 30, what="beat holding the lease")
        proxy.blackhole()  # the server goes silent; the connection stays open
        # Beat ticks (and renews its lease) at least every LEASE / 3 = 2 s, each tick reading
        # the database: once the heartbeat is 3 s old, a tick is waiting on a query.
        blocked = lambda: time.time() - heartbeat.stat().st_mtime > 3  # noqa: E731
        wait_for(blocked, 15, what="a tick blocked on the database")
        beat.popen.send_signal(signal.SIGTERM)
        time.sleep(1)
        proxy.heal()
        try:
            code = beat.popen.wait(20)
        except Exception:
            code = None
        assert code == 0, beat.log()[-3000:]
        # It left through the normal path: the lease is released, not left to expire.
        holder = next(line for line in beat.log().splitlines() if "beat lease taken" in line)
        assert not BeatLease.objects.filter(holder=holder.split("(")[1].split(")")[0]).exists()
    finally:
        proxy.heal()
        beat.stop()
