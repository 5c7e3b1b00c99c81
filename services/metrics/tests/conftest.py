"""Real processes only: Redis db 2 (or TEST_REDIS_URL's), RabbitMQ, celery workers/beat and the companion over HTTP."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import testsupport
from testsupport import free_port

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
COMPANION = [sys.executable, "-m", "celery_stack_metrics"]


# The companion and the workers start and restart under these tests: any exception while
# polling them (refused connection, a series not there yet) means "not yet".
wait_for = functools.partial(testsupport.wait_for, interval=0.25, retry_on=(Exception,))


def config_error(argv: list[str], env: dict) -> str:
    """Start a command with a bad setting: it must exit 2 with a CRITICAL log line. Its message."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["level"] == "CRITICAL", line
    return line["message"]


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
        wait_for(lambda: self.alive() and http_get(self.url + "/")[0] == 200, 15, what="companion HTTP")

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
    # FLUSHDB below: never on db 0 (where a developer's stack or another checkout may live);
    # TEST_REDIS_URL picks the db (default 2), so parallel checkouts can use their own.
    assert client.connection_pool.connection_kwargs.get("db", 0) != 0, f"refusing to flush Redis db 0 ({REDIS_URL})"
    client.flushdb()  # that db only; never FLUSHALL
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


def send_internal_errors(app, hostname, reasons):
    """task-internal-error events as the worker sends them: its event dispatcher, its node name."""
    with app.events.default_dispatcher(hostname=hostname) as dispatcher:
        for reason in reasons:
            dispatcher.send(
                "task-internal-error", uuid=str(uuid.uuid4()), reason=reason,
                exception="ResultNotRecorded('OperationalError: connection refused')",
            )


def redis_server_binary():
    return shutil.which("redis-server")


MONITORING = HERE.parents[2] / "monitoring"


def overview() -> dict:
    return json.loads((MONITORING / "grafana" / "dashboards" / "celery-stack-overview.json").read_text())


def as_grafana_sends(dashboard: dict, expr: str) -> str:
    """A panel's query with every variable at All, substituted as monitoring/check_dashboards.py
    does for the stack check."""
    sys.path.insert(0, str(MONITORING))
    import check_dashboards

    variables = {v["name"]: check_dashboards.var_value(v) for v in dashboard["templating"]["list"]}
    return check_dashboards.substitute(expr, variables, "1m", "15m")


class Prometheus:
    """A real Prometheus with monitoring/'s rules, scraping one target every second."""

    def __init__(self, target_url: str, tmp: Path, job: str):
        (tmp / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(MONITORING / "prometheus" / "rules" / "*.yml")],
            "scrape_configs": [{"job_name": job,
                                "static_configs": [{"targets": [urllib.parse.urlsplit(target_url).netloc]}]}],
        }))  # fmt: skip
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def query(self, expr: str) -> list[dict]:
        status, body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


needs_prometheus = pytest.mark.skipif(
    not shutil.which("prometheus") and not os.environ.get("CI"),
    reason="needs the prometheus binary (make monitoring-tools)",
)
