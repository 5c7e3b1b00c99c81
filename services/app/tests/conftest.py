"""Fixtures: real Postgres, a real broker (Redis; RabbitMQ with TEST_BROKER=amqp; an SQS server,
moto, with TEST_BROKER=sqs), real celery worker processes (one per queue, as in production),
real gunicorn and a real SMTP server.

The environment comes from tests/testenv.py, loaded before Django, as a deployment sets it.
"""

import os
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from .support import create_sqs_queues, start_sqs_server, start_web, start_worker
from .testenv import BROKER, BROKERS, ENV, SQS_PORT


def pytest_report_header():
    return f"broker: {BROKER} ({BROKERS[BROKER].split('@')[-1]})"


def pytest_collection_modifyitems(items):
    for item in items:
        if BROKER != "redis" and item.get_closest_marker("redis_only"):
            item.add_marker(pytest.mark.skip(reason="Redis transport behaviour"))
        marker = item.get_closest_marker("not_on_sqs")
        if BROKER == "sqs" and marker:
            item.add_marker(pytest.mark.skip(reason=f"SQS cannot: {marker.args[0]}"))


# The shared queues' visibility timeout: above the suite's hard time limit, as the worker's
# startup check demands (config/checks.py), and short, so that a lost message comes back soon.
SQS_VISIBILITY_TIMEOUT = int(ENV["CELERY_TASK_TIME_LIMIT"]) + 10


@pytest.fixture(scope="session", autouse=True)
def sqs_server(tmp_path_factory):
    """TEST_BROKER=sqs: moto on SQS_PORT, with the pools' queues (pools.json) created."""
    if BROKER != "sqs":
        yield None
        return
    from config.pools import queue_names

    server = start_sqs_server(SQS_PORT, tmp_path_factory.mktemp("moto"))
    yield create_sqs_queues(
        BROKERS["sqs"], ENV["SQS_QUEUE_PREFIX"], queue_names(), SQS_VISIBILITY_TIMEOUT
    )
    server.stop()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("processes")


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker):
    """A fresh, migrated test database for the whole session, shared with the workers.

    Overrides pytest-django's, which only creates databases for tests marked django_db: these
    tests use committed data (live_db) because the workers run in other processes.
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> str:
    """collectstatic, as the web image's build does: the admin's pages need the manifest."""
    import subprocess
    import sys

    from .support import APP_DIR

    root = str(tmp_path_factory.mktemp("static"))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=APP_DIR,
        env={**os.environ, "DJANGO_STATIC_ROOT": root},
        check=True,
        timeout=300,
    )
    return root


@pytest.fixture(scope="session")
def process_env(django_db_setup, static_root) -> dict:
    """What every spawned process gets: ENV, pointed at the test database."""
    from django.db import connection

    url = ENV["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    return {**ENV, "DATABASE_URL": url, "DJANGO_STATIC_ROOT": static_root}


@pytest.fixture(scope="session")
def celery_app():
    from config.celery import app

    # Start from empty queues: leftovers from an earlier run would be consumed by our workers.
    # (SQS: this run's moto server is new, and kombu's purge misses the queue prefix.)
    with app.connection_for_write() as conn:
        for queue in app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
        if BROKER != "sqs":
            app.control.purge(connection=conn)
    return app


@pytest.fixture
def live_db(django_db_setup, django_db_blocker):
    """Database access in autocommit mode: the workers see what the test writes at once."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def workers(celery_app, process_env, log_dir, smtp):
    """One worker per queue, as in production: `default@…` and `high@…`."""
    started = {
        "default": start_worker("default", "default", process_env, log_dir),
        "high": start_worker("high", "high", process_env, log_dir),
    }
    yield started
    for worker in started.values():
        worker.stop()


@pytest.fixture(scope="session")
def web(process_env, log_dir, workers):
    process = start_web(process_env, log_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_token(django_db_setup, django_db_blocker) -> str:
    """A bearer token allowed every enqueueable task and the report."""
    from jobs.api import ENQUEUEABLE
    from jobs.models import ApiToken

    with django_db_blocker.unblock():
        _, token = ApiToken.issue("tests", list(ENQUEUEABLE), may_start_report=True)
    return token


@pytest.fixture(scope="session")
def api(api_token):
    """requests, authenticated with api_token."""
    import requests

    session = requests.Session()
    session.headers["Connection"] = "close"  # see tests/test_api.py: no keep-alive race
    session.headers["Authorization"] = f"Bearer {api_token}"
    return session


class SmtpRecorder:
    """aiosmtpd handler. Recipients choose their fate:
    flaky-N-…@ fails N times with 451, down-…@ always 451, perm-…@ 550, others accept."""

    def __init__(self):
        self.attempts = defaultdict(int)
        self.delivered = defaultdict(list)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        with self.lock:
            self.attempts[address] += 1
            attempt = self.attempts[address]
        if local.startswith("flaky-") and attempt <= int(local.split("-")[1]):
            return "451 4.3.0 Try again later"
        if local.startswith("down-"):
            return "451 4.3.0 Mail system down"
        if local.startswith("perm-"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for address in envelope.rcpt_tos:
                self.delivered[address].append(envelope.content.decode(errors="replace"))
        return "250 Message accepted"


@pytest.fixture(scope="session")
def smtp():
    from aiosmtpd.controller import Controller

    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=int(ENV["EMAIL_PORT"]))
    controller.start()
    yield recorder
    controller.stop()
