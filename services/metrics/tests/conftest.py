"""Real processes only: Redis db 2, RabbitMQ, celery workers/beat and the companion over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
COMPANION = [sys.executable, "-m", "celery_stack_metrics"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=20.0, interval=0.25, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling while processes start
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def http_get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Companion:
    def __init__(self, env: dict, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"companion-{self.port}.log"
        full = {**os.environ, "METRICS_PORT": str(self.port), "METRICS_HOST": "127.0.0.1", **env}
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(COMPANION, env=full, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.alive() and http_get(self.url + "/")[0] == 200, 15, what="companion HTTP")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthz(self):
        return http_get(self.url + "/healthz")

    def scrape(self) -> dict:
        """{(sample_name, frozenset(labels.items())): value}"""
        status, text = http_get(self.url + "/metrics")
        assert status == 200, text
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, name, **labels):
        return self.scrape().get((name, frozenset(labels.items())))

    def logs(self) -> list[dict]:
        self.log.flush()
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Procs:
    """Celery worker/beat processes of tests/testapp.py."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def _env(self, broker, extra=None):
        return {
            **os.environ,
            "TEST_BROKER_URL": broker,
            "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **(extra or {}),
        }

    def worker(self, broker, *, pool, queue, concurrency=2, host=None, env=None, impl="prefork"):
        node = f"{pool}@{host or 'h' + uuid.uuid4().hex[:6]}"
        log = open(self.tmp / f"worker-{node}.log", "w")
        p = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "testapp", "worker", "-Q", queue, "-n", node,
             "-P", impl, "-c", str(concurrency), "-E", "--without-mingle", "--without-gossip",
             "-l", "INFO"],
            env=self._env(broker, env), stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
        )
        p.nodename = node
        self.procs.append(p)
        return p

    def beat(self, broker, *, queue):
        log = open(self.tmp / "beat.log", "w")
        p = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "testapp", "beat", "-s",
             str(self.tmp / "beat-schedule"), "-l", "INFO"],
            env=self._env(broker, {"TEST_BEAT_QUEUE": queue}), stdout=log, stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"tests need a real Redis at {REDIS_URL}: {exc}")
    assert client.connection_pool.connection_kwargs.get("db") == 2, "tests only ever touch Redis db 2"
    client.flushdb()  # db 2 only; never FLUSHALL
    yield client
    client.flushdb()


@pytest.fixture
def names():
    """Pool and queue names unique to this test (RabbitMQ and the event stream are shared)."""
    tag = "csm" + uuid.uuid4().hex[:8]
    return {
        "default_pool": f"{tag}d",
        "high_pool": f"{tag}h",
        "default_queue": f"{tag}-default",
        "high_queue": f"{tag}-high",
    }


def pools_env(names, dconc=2, hconc=4):
    return json.dumps({
        names["default_pool"]: {"queues": [names["default_queue"]], "concurrency": dconc},
        names["high_pool"]: {"queues": [names["high_queue"]], "concurrency": hconc},
    })


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.stop_all()


@pytest.fixture
def companion_factory(tmp_path):
    started: list[Companion] = []

    def start(**env):
        c = Companion({k: str(v) for k, v in env.items()}, tmp_path)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def publisher():
    """A client of tests/testapp.py bound to a broker URL (imported in-process, like the web app)."""
    apps = []

    def make(broker, transport_options=None):
        os.environ["TEST_BROKER_URL"] = broker
        os.environ["TEST_TRANSPORT_OPTIONS"] = json.dumps(transport_options or {})
        sys.path.insert(0, str(HERE))
        import importlib

        import testapp

        mod = importlib.reload(testapp)
        apps.append(mod.app)
        return mod.app

    yield make
    for a in apps:
        a.close()


def redis_server_binary():
    return shutil.which("redis-server")
