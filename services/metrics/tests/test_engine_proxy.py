"""celery-stack-engine-proxy between a client and an engine API on a unix socket.

No container engine runs in these tests (`make autoscale-e2e` drives the real one through the
proxy): the upstream is a small HTTP server on a unix socket that answers like the engine for
three containers and records every request it receives, so each test can assert that a denied
request never reached it.
"""

from __future__ import annotations

import http.client
import json
import os
import socketserver
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import config_error

from celery_stack_metrics.engine import Engine
from celery_stack_metrics.engine_proxy import serve

PROJECT = "celery-stack-t"
WORKER_IMAGE = "sha256:" + "a" * 64


def container(cid, service, project=PROJECT, image=WORKER_IMAGE):
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
    return {"Id": cid, "Image": image, "Config": {"Labels": labels, "Env": ["X=1"]}, "State": {}}


CONTAINERS = {
    "w1": container("w1", "worker-high"),
    "pg": container("pg", "postgres", image="sha256:" + "b" * 64),
    "other": container("other", "worker-high", project="someone-else"),
}


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        self.received = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(handler):
                length = int(handler.headers.get("Content-Length") or 0)
                body = handler.rfile.read(length) if length else b""
                path = urllib.parse.urlsplit(handler.path).path.removeprefix("/v1.41")
                self.received.append((handler.command, path, body))
                if path == "/_ping":
                    return handler._reply(200, "OK")
                if path == "/containers/json":
                    return handler._reply(200, [{"Id": "w1", "ImageID": WORKER_IMAGE, "Image": "img"}])
                parts = path.strip("/").split("/")
                if parts[0] == "containers" and len(parts) >= 2 and parts[1] in CONTAINERS:
                    return handler._reply(200, CONTAINERS[parts[1]])
                if path == "/containers/create":
                    return handler._reply(201, {"Id": "new"})
                return handler._reply(200, {})

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *_args):
                pass

            def address_string(self):
                return "unix"

        super().__init__(path, Handler)


@pytest.fixture
def proxy(tmp_path):
    engine = FakeEngine(str(tmp_path / "engine.sock"))
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    server = serve(f"unix://{tmp_path / 'engine.sock'}", 0, PROJECT, {"worker-default", "worker-high"},
                   host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], engine
    server.shutdown()
    engine.shutdown()


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def create_body(**host):
    return {
        "Image": WORKER_IMAGE,
        "Labels": {"com.docker.compose.project": PROJECT, "com.docker.compose.service": "worker-high"},
        "HostConfig": {"NetworkMode": f"{PROJECT}_data", "ReadonlyRootfs": True, **host},
    }


def test_the_autoscalers_calls_pass(proxy):
    port, engine = proxy
    client = Engine(f"tcp://localhost:{port}")
    client.ping()
    assert client.service_containers(PROJECT, "worker-high")
    assert client.inspect("w1")["Id"] == "w1"
    assert client.create("celery-stack-t-worker-high-2", create_body()) == "new"
    client.connect(f"{PROJECT}_edge", "w1", {"Aliases": ["x"]})
    client.start("w1")
    client.stop("w1", 1)
    client.remove("w1")
    forwarded = [(m, p) for m, p, _ in engine.received]
    for expected in [("POST", "/containers/create"), ("POST", "/containers/w1/start"),
                     ("POST", "/containers/w1/stop"), ("DELETE", "/containers/w1"),
                     ("POST", f"/networks/{PROJECT}_edge/connect")]:
        assert expected in forwarded


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1.41/images/json", None),
        ("GET", "/v1.41/info", None),
        ("POST", "/v1.41/containers/w1/exec", {"Cmd": ["sh"]}),
        ("POST", "/v1.41/containers/w1/kill", None),
        ("POST", "/v1.41/build", None),
        ("DELETE", "/v1.41/volumes/postgres-data", None),
        ("GET", "/v1.41/containers/json?all=1", None),
        ("GET", "/v1.41/containers/json?" + urllib.parse.urlencode(
            {"filters": json.dumps({"label": [f"com.docker.compose.project={PROJECT}"]})}), None),
        ("POST", "/v1.41/networks/host/connect", {"Container": "w1"}),
    ],
)
def test_everything_else_is_refused_before_the_engine(proxy, method, path, body):
    port, engine = proxy
    status, data = call(port, method, path, body)
    assert status == 403, data
    assert engine.received == []


@pytest.mark.parametrize("cid", ["pg", "other"])
@pytest.mark.parametrize("action", [("POST", "/start"), ("POST", "/stop"), ("DELETE", ""), ("GET", "/json")])
def test_other_containers_are_out_of_reach(proxy, cid, action):
    port, engine = proxy
    method, suffix = action
    status, _ = call(port, method, f"/v1.41/containers/{cid}{suffix}")
    assert status == 403
    # Only the ownership check (an inspect) reached the engine.
    assert [(m, p) for m, p, _ in engine.received] == [("GET", f"/containers/{cid}/json")]


@pytest.mark.parametrize(
    "body",
    [
        create_body(Privileged=True),
        create_body(Binds=["/:/host"]),
        create_body(Mounts=[{"Type": "bind", "Source": "/", "Target": "/host"}]),
        create_body(CapAdd=["SYS_ADMIN"]),
        create_body(Devices=[{"PathOnHost": "/dev/sda"}]),
        create_body(PidMode="host"),
        create_body(NetworkMode="host"),
        create_body(SecurityOpt=["seccomp=unconfined"]),
        {**create_body(), "Image": "alpine"},
        {**create_body(), "Labels": {"com.docker.compose.project": PROJECT,
                                     "com.docker.compose.service": "postgres"}},
        {**create_body(), "Labels": {}},
    ],
)
def test_create_only_a_plain_worker_from_its_own_image(proxy, body):
    port, engine = proxy
    status, data = call(port, "POST", "/v1.41/containers/create?name=x", body)
    assert status == 403, data
    assert ("POST", "/containers/create") not in [(m, p) for m, p, _ in engine.received]


def test_connect_only_own_containers(proxy):
    port, engine = proxy
    status, _ = call(port, "POST", f"/v1.41/networks/{PROJECT}_edge/connect", {"Container": "pg"})
    assert status == 403
    assert ("POST", f"/networks/{PROJECT}_edge/connect") not in [(m, p) for m, p, _ in engine.received]


def test_bad_setting_stops_the_proxy_naming_the_variable():
    proxy = [sys.executable, "-m", "celery_stack_metrics.engine_proxy"]
    env = {**os.environ, "ENGINE_PROXY_PROJECT": "p", "ENGINE_PROXY_PORT": "http"}
    assert "ENGINE_PROXY_PORT must be an integer from 1 to 65535, got 'http'" in config_error(proxy, env)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_PROXY_")}
    assert "ENGINE_PROXY_PROJECT is not set" in config_error(proxy, env)
