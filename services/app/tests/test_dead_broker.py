"""An unreachable broker: the API answers 503 in bounded time and keeps serving."""

import time
from urllib.parse import urlsplit

import pytest
import requests

import testsupport
from testsupport import free_port

from .support import start_web
from .testenv import BROKER, ENV


def broker_url_at(port: int) -> str:
    parts = urlsplit(ENV["CELERY_BROKER_URL"])
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{auth}127.0.0.1:{port}{parts.path}"


@pytest.fixture(scope="module")
def silent_port():
    """A port that accepts connections and never answers: a hung broker."""
    with testsupport.silent_port() as port:
        yield port


@pytest.fixture(scope="module", params=["refused", "silent"])
def dead_web(request, process_env, log_dir, silent_port):
    port = free_port() if request.param == "refused" else silent_port
    web = start_web(
        {**process_env, "CELERY_BROKER_URL": broker_url_at(port)},
        log_dir,
        name=f"web-{request.param}-broker",
    )
    yield web
    web.stop()


def test_enqueue_answers_503_quickly(dead_web, api):
    for _ in range(3):
        started = time.monotonic()
        response = api.post(f"{dead_web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "broker_unavailable"
        assert elapsed < 4, f"took {elapsed:.1f}s"  # bounded: about CELERY_BROKER_TIMEOUT


def test_readyz_reports_the_broker_and_healthz_stays_up(dead_web):
    ready = requests.get(f"{dead_web.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["broker"].startswith("error")
    assert ready.json()["database"] == "ok"
    assert requests.get(f"{dead_web.url}/healthz", timeout=5).status_code == 200


def test_bad_input_is_still_400_without_a_broker(dead_web, api):
    response = api.post(f"{dead_web.url}/api/tasks/add", json={"args": ["x"]}, timeout=10)
    assert response.status_code == 400


if BROKER not in {"redis", "amqp", "sqs"}:  # pragma: no cover
    pytestmark = pytest.mark.skip("unknown broker")


def test_a_publish_into_a_silent_broker_fails_instead_of_being_lost(celery_app):
    """The broker goes silent after the connection is up (a network cut). A publish must not
    report success for a message the broker never got: on RabbitMQ it waits for the publisher
    confirm, bounded; on Redis for LPUSH's reply. It raises, and the API answers 503."""
    from jobs import tasks

    from .faults import FaultyProxy

    proxy = FaultyProxy(urlsplit(ENV["CELERY_BROKER_URL"]).port)
    try:
        # The app's connection settings (timeouts, confirms), only the address differs.
        with celery_app.connection_for_write(broker_url_at(proxy.port)) as conn:
            conn.ensure_connection(max_retries=1)
            assert tasks.add.apply_async((1, 2), connection=conn, retry=False).id
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(Exception) as raised:  # the broker transport's own error type
                tasks.add.apply_async((3, 4), connection=conn, retry=False)
            assert time.monotonic() - started < 10, raised.value
            proxy.heal()  # so that closing the connection is answered
    finally:
        proxy.down()
