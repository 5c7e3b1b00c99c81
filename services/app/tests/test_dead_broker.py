"""An unreachable broker: the API answers 503 in bounded time and keeps serving."""

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from .support import free_port, start_web
from .testenv import BROKER, ENV


def broker_url_at(port: int) -> str:
    parts = urlsplit(ENV["CELERY_BROKER_URL"])
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{auth}127.0.0.1:{port}{parts.path}"


@pytest.fixture(scope="module")
def silent_port():
    """A TCP listener that accepts connections and never answers: a hung broker."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


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


def test_enqueue_answers_503_quickly(dead_web):
    for _ in range(3):
        started = time.monotonic()
        response = requests.post(f"{dead_web.url}/api/tasks/add", json={"args": [1, 2]}, timeout=30)
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


def test_bad_input_is_still_400_without_a_broker(dead_web):
    response = requests.post(f"{dead_web.url}/api/tasks/add", json={"args": ["x"]}, timeout=10)
    assert response.status_code == 400


if BROKER not in {"redis", "amqp"}:  # pragma: no cover
    pytestmark = pytest.mark.skip("unknown broker")
