"""Queues and routes come from the environment (config/pools.py): a deployment adds a pool
without a code change, and a declaration that cannot work stops every process at startup."""

import json
import sys

import pytest

from .support import BIN
from .test_startup import DJANGO_CHECK, run
from .testenv import ENV

REPORTS = {
    **ENV,
    "CELERY_TASK_QUEUES": "default,high,reports",
    "CELERY_TASK_ROUTES": json.dumps({"jobs.tasks.count_widgets": "reports"}),
}
SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "from config.celery import app; "
    "print(json.dumps({'queues': [q.name for q in s.CELERY_TASK_QUEUES], "
    "'route': app.amqp.router.route({}, 'jobs.tasks.count_widgets')['queue'].name, "
    "'fallthrough': app.amqp.router.route({}, 'jobs.tasks.xsum')['queue'].name}))"
)


def test_a_new_pool_is_declared_and_routed_from_the_environment():
    result = run([sys.executable, "-c", SHOW], REPORTS)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown == {"queues": ["default", "high", "reports"], "route": "reports",
                     "fallthrough": "default"}  # fmt: skip


def test_without_the_environment_the_generated_defaults_apply():
    result = run(
        [sys.executable, "-c", SHOW], {**ENV, "CELERY_TASK_QUEUES": "", "CELERY_TASK_ROUTES": ""}
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["queues"] == ["default", "high"]  # services/app/config/pools.json
    assert shown["route"] == "default"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"CELERY_TASK_ROUTES": '{"jobs.tasks.add": "nope"}'}, "sends tasks to ['nope']"),
        ({"CELERY_TASK_ROUTES": "not json"}, "CELERY_TASK_ROUTES is not valid JSON"),
        ({"CELERY_TASK_QUEUES": "high,reports"}, "CELERY_TASK_QUEUES must include `default`"),
        ({"CELERY_TASK_QUEUES": "default,bad queue"}, "invalid queue names ['bad queue']"),
    ],
    ids=["route-to-undeclared", "routes-not-json", "no-default", "bad-name"],
)
def test_a_declaration_that_cannot_work_refuses_to_start(env, message):
    result = run(DJANGO_CHECK, {**REPORTS, **env})
    assert result.returncode != 0
    assert message in result.stderr


def test_a_worker_of_an_undeclared_queue_says_why_instead_of_improperly_configured():
    env = {**REPORTS, "CELERY_TASK_QUEUES": "default,high", "CELERY_TASK_ROUTES": "{}",
           "CELERY_WORKER_QUEUES": "reports", "CELERY_WORKER_POOL_NAME": "reports"}  # fmt: skip
    result = run([str(BIN / "worker")], env)
    assert result.returncode != 0
    assert "CELERY_WORKER_QUEUES names ['reports']" in result.stderr
    assert "ImproperlyConfigured" not in result.stderr


def test_the_startup_checks_apply_to_a_new_pool():
    """A new pool with a hard limit beyond RabbitMQ's consumer_timeout is refused like any."""
    env = {**REPORTS, "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
           "CELERY_WORKER_QUEUES": "reports", "CELERY_WORKER_POOL_NAME": "reports",
           "CELERY_TASK_SOFT_TIME_LIMIT": "1700", "CELERY_TASK_TIME_LIMIT": "1800",
           "RABBITMQ_CONSUMER_TIMEOUT": "1800"}  # fmt: skip
    result = run([str(BIN / "worker")], env)
    assert result.returncode != 0
    assert "Refusing to start: RABBITMQ_CONSUMER_TIMEOUT=1800s" in result.stderr


def test_prefetch_multiplier_is_per_pool():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CELERY_WORKER_PREFETCH_MULTIPLIER)"
    )
    assert run([sys.executable, "-c", code], ENV).stdout.split()[-1] == "1"
    assert (
        run(
            [sys.executable, "-c", code], {**ENV, "CELERY_WORKER_PREFETCH_MULTIPLIER": "4"}
        ).stdout.split()[-1]
        == "4"
    )
    refused = run(DJANGO_CHECK, {**ENV, "CELERY_WORKER_PREFETCH_MULTIPLIER": "0"})
    assert refused.returncode != 0
    assert "CELERY_WORKER_PREFETCH_MULTIPLIER must be an integer >= 1" in refused.stderr
