"""celery-stack-autoscaler: the chart's KEDA/HPA decision, fed by the real companion over HTTP.

The decision (scaling.PoolScaler) is exercised with the clock passed in, so the HPA's windows and
periods are checked exactly without sleeping. The signal comes from the real companion scraping
real Redis db 2 (and from a real Prometheus scraping that companion), with real workers holding
active tasks. The process itself is started for its config errors and its behaviour when the
engine and the metrics endpoint are unreachable. Scaling real containers is tests/autoscale.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest
from conftest import REDIS_URL, config_error, free_port, http_get, pools_env, wait_for

from celery_stack_metrics.autoscaler.replicas import clone_spec, replica_name
from celery_stack_metrics.autoscaler.scaling import Policy, PoolScaler
from celery_stack_metrics.autoscaler.settings import OPTIONS, load
from celery_stack_metrics.autoscaler.signal import MetricsError, read_companion, read_prometheus
from celery_stack_metrics.envopts import ConfigError

AUTOSCALER = [sys.executable, "-m", "celery_stack_metrics.autoscaler"]


# The knobs as the environment gives them by default: the chart's values (pinned in
# test_knobs_have_the_chart_defaults_and_per_pool_overrides below).
CHART = load({"AUTOSCALE_COMPOSE_PROJECT": "p"}).pools[0].knobs


def scaler(**kw) -> PoolScaler:
    return PoolScaler(dataclasses.replace(CHART, **kw))


# ---- the decision: the chart's formula and the HPA's behaviour ----------------------------------


def test_formula_is_ceil_backlog_over_target_clamped_to_bounds():
    s = scaler(min_replicas=1, max_replicas=10)
    # KEDA's example: queue 20, target 5 => 4 (AverageValue ignores the current count).
    assert s.decide(0, backlog=20, target=5, current=1).desired == 4
    s = scaler(min_replicas=1, max_replicas=10)
    assert s.decide(0, backlog=21, target=5, current=1).desired == 5  # ceil, the 21st task gets a slot
    s = scaler(min_replicas=2, max_replicas=3)
    d = s.decide(0, backlog=1000, target=2, current=2)
    assert (d.recommendation, d.desired) == (500, 3)
    assert "max replicas" in d.reason
    s = scaler(min_replicas=2, max_replicas=3)
    assert s.decide(0, backlog=0, target=2, current=2).desired == 2


def test_scale_up_is_immediate_and_rate_limited_like_the_hpa():
    # behavior.scaleUp: +4 pods or +100 % per 30 s, whichever is more.
    s = scaler(min_replicas=1, max_replicas=50)
    d = s.decide(0, backlog=100, target=2, current=1)
    assert d.desired == 5 and "scale-up limit" in d.reason  # max(1 + 4, 1 * 2)
    s.applied(0, 4)
    # Within the same 30 s period the start-of-period count is still 1: no more.
    assert s.decide(15, backlog=100, target=2, current=5).desired == 5
    # Next period: max(5 + 4, 5 * 2) = 10.
    assert s.decide(31, backlog=100, target=2, current=5).desired == 10


def test_scale_down_waits_for_the_stabilisation_window_then_sheds_25_percent_a_minute():
    s = scaler(min_replicas=1, max_replicas=10)  # window 300 s, -25 % per 60 s
    assert s.decide(0, backlog=16, target=2, current=8).desired == 8
    # The burst is gone, but 8 was recommended within the last 300 s: hold.
    for t in (15, 150, 299):
        d = s.decide(t, backlog=0, target=2, current=8)
        assert d.desired == 8, t
        assert "stabilisation" in d.reason
    d = s.decide(301, backlog=0, target=2, current=8)
    assert d.desired == 6 and "scale-down limit" in d.reason  # int(8 * 0.75)
    s.applied(301, -2)
    assert s.decide(330, backlog=0, target=2, current=6).desired == 6  # same 60 s period
    assert s.decide(362, backlog=0, target=2, current=6).desired == 4  # int(6 * 0.75)


def test_a_short_gap_between_bursts_keeps_the_replicas():
    knobs = dataclasses.replace(CHART, scale_down=Policy(stabilization_window=60, pods=0, percent=100, period=60))
    s = PoolScaler(knobs)
    assert s.decide(0, backlog=8, target=2, current=4).desired == 4
    assert s.decide(30, backlog=0, target=2, current=4).desired == 4  # gap
    assert s.decide(45, backlog=8, target=2, current=4).desired == 4  # next burst: still there
    assert s.decide(106, backlog=0, target=2, current=4).desired == 1  # 60 s after the last 4


def test_within_tolerance_the_current_count_stays():
    s = scaler(max_replicas=20)
    # 21 / (2 * 10) = 1.05: within the HPA's 10 % tolerance, so 10, not 11.
    assert s.decide(0, backlog=21, target=2, current=10).desired == 10
    assert s.decide(1, backlog=23, target=2, current=10).desired == 12


def test_cooldown_and_activation_apply_only_to_zero():
    # min 0 is refused under Compose (load() below); the logic mirrors KEDA for completeness.
    s = scaler(min_replicas=0, cooldown_period=100, activation_threshold=3)
    assert s.decide(0, backlog=3, target=2, current=0).desired == 0  # not above the threshold
    assert s.decide(1, backlog=4, target=2, current=0).desired == 1  # activation
    s.applied(1, 1)
    assert s.decide(20, backlog=0, target=2, current=1).desired == 1  # cooling down
    assert s.decide(102, backlog=0, target=2, current=1).desired == 0


# ---- configuration -------------------------------------------------------------------------------


def env(**kw):
    return {"AUTOSCALE_COMPOSE_PROJECT": "p", **{k: str(v) for k, v in kw.items()}}


def test_knobs_have_the_chart_defaults_and_per_pool_overrides():
    s = load(env(AUTOSCALE_HIGH_MAX_REPLICAS=3, AUTOSCALE_MIN_REPLICAS=2))
    pools = {p.name: p for p in s.pools}
    assert set(pools) == {"default", "high"}
    assert pools["high"].service == "worker-high"
    assert pools["high"].knobs.max_replicas == 3
    assert pools["default"].knobs.max_replicas == 10
    assert pools["default"].knobs.min_replicas == pools["high"].knobs.min_replicas == 2
    k = pools["default"].knobs
    assert (k.target_per_replica, k.polling_interval, k.cooldown_period) == (0, 15, 300)
    assert k.scale_down == Policy(stabilization_window=300, pods=0, percent=25, period=60)
    assert k.scale_up == Policy(stabilization_window=0, pods=4, percent=100, period=30)
    assert s.docker_host == "unix:///var/run/docker.sock"
    assert s.metrics_url == "http://queue-metrics:9809/metrics"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"AUTOSCALE_COMPOSE_PROJECT": ""}, "AUTOSCALE_COMPOSE_PROJECT is not set"),
        ({"AUTOSCALE_MIN_REPLICAS": "0"}, "AUTOSCALE_MIN_REPLICAS must be an integer >= 1, got '0'"),
        ({"AUTOSCALE_MIN_REPLICAS": "0"}, "a new replica is a clone of a running one"),
        ({"AUTOSCALE_HIGH_MIN_REPLICAS": "5", "AUTOSCALE_MAX_REPLICAS": "4"}, "MAX_REPLICAS (4) is below"),
        ({"AUTOSCALE_HIGH_MAX_REPLICAS": "many"}, "AUTOSCALE_HIGH_MAX_REPLICAS must be an integer >= 1, got 'many'"),
        ({"AUTOSCALE_POLLING_INTERVAL": "soon"}, "AUTOSCALE_POLLING_INTERVAL must be a number >= 1, got 'soon'"),
        ({"AUTOSCALE_POLLING_INTERVAL": "inf"}, "AUTOSCALE_POLLING_INTERVAL must be a number >= 1, got 'inf'"),
        ({"AUTOSCALE_TARGET_PER_REPLICA": "-1"}, "AUTOSCALE_TARGET_PER_REPLICA must be a number >= 0, got '-1'"),
        ({"AUTOSCALE_PORT": "70000"}, "AUTOSCALE_PORT must be an integer from 1 to 65535, got '70000'"),
        ({"AUTOSCALE_LOG_LEVEL": "chatty"}, "AUTOSCALE_LOG_LEVEL must be one of"),
        ({"AUTOSCALE_PROMETHEUS_LABELS": '{"job": 1}'}, "AUTOSCALE_PROMETHEUS_LABELS must be a JSON object of strings"),
        ({"AUTOSCALE_POOLS": "high,high"}, "distinct pool names"),
        ({"AUTOSCALE_METRICS_URL": "queue-metrics:9809"}, "must be an http(s) URL"),
        ({"DOCKER_HOST": "tcp://10.0.0.1:2375"}, "must be a unix socket"),
        ({"AUTOSCALE_SCALE_DOWN_PERCENT": "0"}, "could never scale down"),
    ],
)
def test_bad_configuration_is_rejected_with_the_variable_named(bad, message):
    with pytest.raises(ConfigError) as exc:
        load({**env(), **bad})
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"AUTOSCALE_MIN_REPLICAS": "0"}, "AUTOSCALE_MIN_REPLICAS must be an integer >= 1, got '0'"),
        ({"AUTOSCALE_DEFAULT_SCALE_UP_PERIOD": "0.5"}, "AUTOSCALE_DEFAULT_SCALE_UP_PERIOD must be a number >= 1"),
    ],
)
def test_bad_configuration_stops_the_process_with_exit_2(bad, message):
    assert message in config_error(AUTOSCALER, {**os.environ, "AUTOSCALE_COMPOSE_PROJECT": "p", **bad})


def test_help_lists_every_declared_variable_with_its_default():
    proc = subprocess.run([*AUTOSCALER, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for option in OPTIONS:
        assert option.name in proc.stdout or option.pool_variable("<POOL>") in proc.stdout
    assert "AUTOSCALE_MAX_REPLICAS (per pool: AUTOSCALE_<POOL>_MAX_REPLICAS)" in proc.stdout
    assert "Default: 300; a number >= 0." in proc.stdout  # the scale-down window


# ---- the signal, from the real companion ---------------------------------------------------------


def test_backlog_from_the_companion_counts_priority_lists_and_active_tasks(
    redis_db, names, companion_factory, publisher, procs
):
    pool, q = names["default_pool"], names["default_queue"]
    app = publisher(REDIS_URL)
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names, dconc=2), METRICS_POLL_INTERVAL=0.5
    )
    url = c.url + "/metrics"
    # Two long tasks that a worker (concurrency 2) will hold, then 5 queued, one of them in a
    # priority sub-list that a plain LLEN misses.
    for _ in range(2):
        app.send_task("tests.sleep", args=[20], queue=q)
    worker = procs.worker(REDIS_URL, pool=pool, queue=q, concurrency=2)
    wait_for(lambda: c.value("celery_pool_active_tasks", pool=pool) == 2, 30, what="2 active")
    for _ in range(4):
        app.send_task("tests.sleep", args=[0], queue=q)
    app.send_task("tests.sleep", args=[0], queue=q, priority=9)

    sig = wait_for(
        lambda: (s := read_companion(url, [pool, names["high_pool"]])[pool]).backlog == 7 and s,
        15,
        what="backlog 7",
    )
    assert sig.concurrency == 2
    # ceil(7 / 2) = 4: the replicas the chart's ScaledObject would ask for.
    s = scaler(max_replicas=10)
    assert s.decide(0, sig.backlog, sig.concurrency, current=1).desired == 4
    assert read_companion(url, [pool, names["high_pool"]])[names["high_pool"]].backlog == 0
    # Cold shutdown: the 20 s tasks must not outlive the test in orphaned pool processes.
    worker.send_signal(signal.SIGQUIT)
    worker.wait(30)


def test_no_backlog_series_is_an_error_not_zero(names, companion_factory):
    # The companion drops the queued series while its broker is unreachable.
    port = free_port()
    c = companion_factory(
        CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/2", METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5
    )
    wait_for(lambda: c.value("celery_stack_metrics_consecutive_poll_failures") >= 1, 15, what="a failed poll")
    with pytest.raises(MetricsError, match="no celery_pool_queued_messages"):
        read_companion(c.url + "/metrics", [names["default_pool"]])
    with pytest.raises(MetricsError, match="unreachable"):
        read_companion(f"http://127.0.0.1:{free_port()}/metrics", [names["default_pool"]])


@pytest.mark.skipif(not shutil.which("prometheus") and not os.environ.get("CI"),
                    reason="needs the prometheus binary (make monitoring-tools)")
def test_prometheus_source_runs_the_charts_query(redis_db, names, companion_factory, publisher, tmp_path):
    pool, q = names["high_pool"], names["high_queue"]
    app = publisher(REDIS_URL)
    for _ in range(9):
        app.send_task("tests.sleep", args=[0], queue=q)
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names, hconc=4), METRICS_POLL_INTERVAL=0.5
    )
    target = urllib.parse.urlsplit(c.url).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: autoscale-test, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        sig = wait_for(
            lambda: read_prometheus(base, [pool], {"job": "autoscale-test"})[pool], 30, what="prometheus answer"
        )
        assert (sig.backlog, sig.concurrency) == (9, 4)
        with pytest.raises(MetricsError, match="empty result"):
            read_prometheus(base, ["no-such-pool"], {})
    finally:
        prom.terminate()
        prom.wait(10)
        log.close()


# ---- the process: unreachable engine and metrics -------------------------------------------------


def test_unreachable_engine_and_metrics_keep_it_running_and_unhealthy(tmp_path):
    port = free_port()
    full = {
        **os.environ,
        "AUTOSCALE_COMPOSE_PROJECT": "p",
        "AUTOSCALE_PORT": str(port),
        "AUTOSCALE_HOST": "127.0.0.1",
        "AUTOSCALE_POLLING_INTERVAL": "1",
        "AUTOSCALE_METRICS_URL": f"http://127.0.0.1:{free_port()}/metrics",
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
    }
    log_path = tmp_path / "autoscaler.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(AUTOSCALER, env=full, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(base + "/healthz")[0] == 503, 15, what="503 from /healthz")
        time.sleep(2.5)  # a few polling intervals
        assert proc.poll() is None
        status, body = http_get(base + "/healthz")
        assert status == 503 and "unreachable" in json.loads(body)["last_error"]
        status, text = http_get(base + "/metrics")
        assert "celery_stack_autoscaler_metrics_up 0.0" in text
        errors = [
            ln for ln in text.splitlines() if ln.startswith('celery_stack_autoscaler_errors_total{kind="metrics"}')
        ]
        assert errors and float(errors[0].split()[-1]) >= 2
        lines = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()]
        assert any("engine not reachable" in ln["message"] and "no-engine.sock" in ln["error"] for ln in lines)
        assert any("holding the current replica counts" in ln["message"] for ln in lines)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


# ---- the clone -----------------------------------------------------------------------------------


def test_clone_keeps_the_replica_settings_and_gets_its_own_identity():
    template = {
        "Id": "4f9c3ca41bae" + "0" * 52,
        "Name": "/proj-worker-high-1",
        "Image": "sha256:abc",
        "Config": {
            "Hostname": "4f9c3ca41bae",
            "Image": "celery-stack-worker:latest",
            "Env": ["CELERY_WORKER_QUEUES=high", "HOSTNAME=4f9c3ca41bae"],
            "Cmd": ["bin/worker"],
            "Labels": {"com.docker.compose.service": "worker-high", "com.docker.compose.container-number": "1"},
            "StopSignal": "15",
            "StopTimeout": 75,
            "Healthcheck": {"Test": ["CMD", "bin/heartbeat-check"]},
        },
        "HostConfig": {
            "NanoCpus": 10**9,
            "CpuPeriod": 100000,
            "CpuQuota": 100000,
            "Memory": 805306368,
            "ReadonlyRootfs": True,
            "Runtime": "oci",
            "NetworkMode": "bridge",
            "Ulimits": [{"Name": "RLIMIT_NOFILE", "Soft": 20000, "Hard": 20000}],
        },
        "NetworkSettings": {
            "Networks": {
                "proj_data": {"Aliases": ["proj-worker-high-1", "worker-high", "4f9c3ca41bae"]},
                "proj_edge": {"Aliases": ["worker-high"]},
            }
        },
    }
    name = replica_name(template["Name"], 3)
    assert name == "proj-worker-high-3"
    body, more = clone_spec(template, name, 3)
    assert "Hostname" not in body  # its own hostname, so its own Celery node name
    assert body["Env"] == ["CELERY_WORKER_QUEUES=high"]
    assert body["Image"] == "sha256:abc"
    assert body["Labels"]["com.docker.compose.container-number"] == "3"
    assert (body["StopTimeout"], body["Healthcheck"]["Test"]) == (75, ["CMD", "bin/heartbeat-check"])
    host = body["HostConfig"]
    assert host["NanoCpus"] == 10**9 and "CpuQuota" not in host and "Runtime" not in host
    assert host["Ulimits"][0]["Name"] == "nofile"
    assert host["NetworkMode"] == "proj_data"
    assert body["NetworkingConfig"]["EndpointsConfig"]["proj_data"]["Aliases"] == ["worker-high", name]
    assert more == [("proj_edge", {"Aliases": ["worker-high", name]})]
