"""Configuration errors, and a broker that is down, comes back, and goes away again."""

import os
import subprocess
import sys
import time

import pytest
from conftest import COMPANION, Companion, config_error, free_port, pools_env, redis_server_binary, wait_for


def run(env):
    full = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    full.update(env)
    return subprocess.run(COMPANION, env=full, capture_output=True, text=True, timeout=30)


def test_missing_broker_url_is_a_clear_error():
    r = run({})
    assert r.returncode == 2
    assert "CELERY_BROKER_URL" in r.stdout


@pytest.mark.parametrize(
    "pools, fragment",
    [
        ("{not json", "not valid JSON"),
        ('["default"]', "non-empty JSON object"),
        ('{"default": {"queues": [], "concurrency": 2}}', "queues"),
        ('{"default": {"queues": ["default"], "concurrency": 0}}', "concurrency"),
        ('{"default": {"queues": ["default"]}}', "concurrency"),
    ],
)
def test_malformed_pools_is_a_clear_error(pools, fragment):
    r = run({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/2", "METRICS_POOLS": pools})
    assert r.returncode == 2
    assert "METRICS_POOLS" in r.stdout and fragment in r.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_PORT": "0"}, "METRICS_PORT must be an integer from 1 to 65535, got '0'"),
        ({"METRICS_POLL_INTERVAL": "soon"}, "METRICS_POLL_INTERVAL must be a number > 0, got 'soon'"),
        ({"METRICS_WORKER_TIMEOUT": "-5"}, "METRICS_WORKER_TIMEOUT must be a number > 0, got '-5'"),
        ({"METRICS_LOG_LEVEL": "loud"}, "METRICS_LOG_LEVEL must be one of"),
        ({"METRICS_BROKER_TRANSPORT_OPTIONS": "[1]"}, "METRICS_BROKER_TRANSPORT_OPTIONS must be a JSON object"),
        ({"DATABASE_URL": "mysql://db/app"}, "DATABASE_URL must be a postgres:// URL, got 'mysql://db/app'"),
        ({"METRICS_DATABASE_TIMEOUT": "0"}, "METRICS_DATABASE_TIMEOUT must be a number > 0 <= 60, got '0'"),
    ],
)
def test_bad_or_out_of_range_value_stops_the_process_naming_the_variable(env, message):
    full = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/2", **env}
    assert message in config_error(COMPANION, full)


def test_broker_down_then_up_then_down(tmp_path, names):
    binary = redis_server_binary()
    if not binary:
        pytest.fail("redis-server is needed to start and stop a private broker")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/2"
    c = Companion(
        {"CELERY_BROKER_URL": url, "METRICS_POOLS": pools_env(names), "METRICS_POLL_INTERVAL": "0.5"}, tmp_path
    )
    try:
        # Down from the start: keeps serving, says so, does not exit.
        wait_for(lambda: c.value("celery_stack_metrics_consecutive_poll_failures") >= 1, what="poll failure")
        assert c.healthz()[0] == 503
        s = c.scrape()
        assert s[("celery_stack_metrics_broker_up", frozenset())] == 0
        assert s[("celery_stack_metrics_events_connected", frozenset())] == 0
        assert not [k for k in s if k[0] == "celery_queue_depth"]  # no stale or made-up depth
        time.sleep(3)
        assert c.alive()
        errors = [line for line in c.logs() if line["level"] == "ERROR"]
        assert any(line["message"] == "broker poll failed; retrying" and "error" in line for line in errors)

        # The broker appears: healthy without a restart.
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: c.healthz()[0] == 200, 40, what="healthy after broker start")
            assert c.value("celery_queue_depth", queue_name=names["high_queue"]) == 0
        finally:
            server.terminate()
            server.wait(10)

        # And goes away again.
        wait_for(lambda: c.healthz()[0] == 503, 30, what="unhealthy after broker stop")
        wait_for(lambda: c.value("celery_stack_metrics_broker_up") == 0, 30, what="poll fails after stop")
        assert c.healthz()[0] == 503
        time.sleep(2)
        assert c.alive()
    finally:
        c.stop()


def test_version_flag():
    r = subprocess.run([*COMPANION, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip()
    assert sys.executable
