"""Startup refuses unsafe or incomplete configuration, with a message that says what to fix."""

import os
import subprocess
import sys

import pytest
import requests

from testsupport import wait_for

from .support import APP_DIR, BIN, Process
from .testenv import ENV

PATH = f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"


def run(argv, env, timeout=60):
    return subprocess.run(
        argv,
        cwd=APP_DIR,
        env={**os.environ, "PATH": PATH, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


DJANGO_CHECK = [sys.executable, "manage.py", "check"]


VISIBILITY_ENV = {
    **ENV,
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1",
    "CELERY_TASK_TIME_LIMIT": "360",
    "API_MAX_COUNTDOWN": "300",
}


@pytest.mark.parametrize(
    "argv",
    [DJANGO_CHECK, [str(BIN / "worker")], [str(BIN / "beat")]],
    ids=["web", "worker", "beat"],
)
def test_short_visibility_timeout_refuses_to_start(argv):
    result = run(argv, {**VISIBILITY_ENV, "CELERY_BROKER_VISIBILITY_TIMEOUT": "300"})
    assert result.returncode != 0
    assert "Refusing to start: CELERY_BROKER_VISIBILITY_TIMEOUT=300s" in result.stderr
    assert "longest task time limit (360s" in result.stderr


def test_visibility_timeout_just_above_the_limit_starts():
    result = run(DJANGO_CHECK, {**VISIBILITY_ENV, "CELERY_BROKER_VISIBILITY_TIMEOUT": "361"})
    assert result.returncode == 0, result.stderr


@pytest.mark.not_on_sqs("a queue's visibility timeout is its SQS attribute (tests/test_sqs.py)")
def test_each_pool_gets_its_own_visibility_window():
    """Unset, the timeout follows the pool's own hard limit; each pool has its own unacked keys,
    so a short `high` window never redelivers a long `default` task."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "o = s.CELERY_BROKER_TRANSPORT_OPTIONS; "
        "print(o['visibility_timeout'], o['unacked_key'], o['unacked_index_key'])"
    )
    env = {k: v for k, v in ENV.items() if k != "CELERY_BROKER_VISIBILITY_TIMEOUT"}
    high = run(
        [sys.executable, "-c", code],
        {**env, "CELERY_TASK_TIME_LIMIT": "45", "CELERY_WORKER_POOL_NAME": "high"},
    )
    assert high.returncode == 0, high.stderr
    assert high.stdout.split() == ["75", "unacked:high", "unacked_index:high"]
    default = run(
        [sys.executable, "-c", code],
        {**env, "CELERY_TASK_TIME_LIMIT": "360", "CELERY_WORKER_POOL_NAME": "default"},
    )
    assert default.stdout.split() == ["390", "unacked:default", "unacked_index:default"]


def test_rabbitmq_consumer_timeout_is_checked_too():
    env = {
        **ENV,
        "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "RABBITMQ_CONSUMER_TIMEOUT": "100",
    }
    result = run(DJANGO_CHECK, env)
    assert result.returncode != 0
    assert "RABBITMQ_CONSUMER_TIMEOUT=100s" in result.stderr


@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"])
def test_missing_required_variable_is_named(variable):
    env = {key: value for key, value in {**os.environ, **ENV}.items() if key != variable}
    result = subprocess.run(
        DJANGO_CHECK, cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"Required environment variable {variable} is not set" in result.stderr


def test_eager_mode_is_refused_outside_development():
    result = run(DJANGO_CHECK, {**ENV, "CELERY_TASK_ALWAYS_EAGER": "true", "DJANGO_DEBUG": "false"})
    assert result.returncode != 0
    assert "CELERY_TASK_ALWAYS_EAGER=true is for development only" in result.stderr


def test_eager_mode_is_accepted_in_development():
    code = (
        "import django; django.setup(); from config.celery import app; "
        "print(app.conf.task_always_eager)"
    )
    result = run(
        [sys.executable, "-c", code],
        {**ENV, "CELERY_TASK_ALWAYS_EAGER": "true", "DJANGO_DEBUG": "true"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "True"


def test_bad_integer_variable_is_named():
    result = run(DJANGO_CHECK, {**ENV, "CELERY_TASK_TIME_LIMIT": "ten"})
    assert result.returncode != 0
    assert "CELERY_TASK_TIME_LIMIT must be an integer" in result.stderr


@pytest.mark.usefixtures("live_db")
def test_default_schedules_exist_and_beat_sends_its_heartbeat(process_env, log_dir, workers):
    from django_celery_beat.models import PeriodicTask
    from django_celery_results.models import TaskResult

    schedules = {task.name: task for task in PeriodicTask.objects.all()}
    assert schedules["celery.backend_cleanup"].task == "celery.backend_cleanup"
    assert schedules["beat-heartbeat"].queue == "high"
    assert schedules["beat-heartbeat"].interval.every == 15

    heartbeat = log_dir / "beat.heartbeat"
    beat = Process(
        "beat",
        [str(BIN / "beat")],
        {**process_env, "CELERY_HEARTBEAT_FILE": str(heartbeat)},
        log_dir,
    )
    try:
        wait_for(heartbeat.exists, 30, what="beat heartbeat file")
        check = run([str(BIN / "heartbeat-check"), str(heartbeat), "10"], {})
        assert check.returncode == 0, check.stderr
        wait_for(
            lambda: TaskResult.objects.filter(
                task_name="jobs.tasks.beat_heartbeat", status="SUCCESS"
            ).exists(),
            45,
            interval=0.5,
            what="beat_heartbeat sent by beat and run by the high pool",
        )
        row = TaskResult.objects.filter(task_name="jobs.tasks.beat_heartbeat").first()
        assert row.worker.startswith("high@")
    finally:
        assert beat.stop() == 0


def test_web_keeps_serving_health_without_database(log_dir):
    """Liveness touches no dependency: a dead database makes /readyz 503, /healthz stays 200."""
    from .support import start_web

    env = {**ENV, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    web = start_web(env, log_dir, name="web-nodb")
    try:
        assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
        ready = requests.get(web.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("error")
    finally:
        web.stop()
