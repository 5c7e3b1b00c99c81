"""celery-stack-engine-proxy: the only path from the autoscaler to the container engine.

The engine's socket is root on the host. This proxy holds it and forwards only what the
autoscaler does, and only for this Compose project's worker services:

  GET    /_ping
  GET    /containers/json            the label filters must name the project and a worker service
  GET    /containers/{id}/json       inspect, of a worker container of the project
  POST   /containers/create          a worker of the project, from that service's image, with no
                                     privilege, host namespace, device, capability or bind mount
  POST   /containers/{id}/start|stop of a worker container of the project
  POST   /networks/{net}/connect     a worker container of the project to one of its networks
  DELETE /containers/{id}            a worker container of the project (failed or stopped replica)

Everything else gets 403 and never reaches the engine: images, volumes, exec, build, other
containers, the daemon's settings. The autoscaler talks to it over TCP on an internal network
that only the two share, and never holds the socket itself.

Environment: ENGINE_PROXY_* below (--help prints them with their defaults).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .cli import start
from .engine import EngineError, _UnixConnection, socket_path
from .envopts import LOG_LEVELS, Option, describe, integer, name_list

log = logging.getLogger("celery_stack_metrics.engine_proxy")

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_VERSION = re.compile(r"^/v1\.\d+(?=/)")
_CONTAINER = re.compile(r"^/containers/([A-Za-z0-9_.-]+)(/json|/start|/stop)?$")
_NETWORK_CONNECT = re.compile(r"^/networks/([A-Za-z0-9_.-]+)/connect$")
MAX_BODY = 1 << 20
HOST_NAMESPACES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode", "NetworkMode")


class Denied(Exception):
    pass


class Upstream:
    def __init__(self, docker_host: str, timeout: float = 120.0):
        self.path = socket_path(docker_host)
        self.timeout = timeout

    def request(self, method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, list, bytes]:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def json(self, url: str):
        status, _, data = self.request("GET", url, None, {})
        if status != 200:
            raise Denied(f"GET {url}: engine answered {status}")
        return json.loads(data)


class Policy:
    """What the autoscaler may do, for one project and its worker services."""

    def __init__(self, upstream: Upstream, project: str, services: set[str]):
        self.upstream = upstream
        self.project = project
        self.services = services

    def _ours(self, labels: dict | None) -> bool:
        labels = labels or {}
        return labels.get(PROJECT_LABEL) == self.project and labels.get(SERVICE_LABEL) in self.services

    def owned(self, version: str, cid: str) -> dict:
        """The inspect result of a worker container of the project, else Denied."""
        info = self.upstream.json(f"{version}/containers/{urllib.parse.quote(cid)}/json")
        if not self._ours((info.get("Config") or {}).get("Labels")):
            raise Denied(f"container {cid} is not a worker of project {self.project}")
        return info

    def check_list(self, query: str) -> None:
        params = urllib.parse.parse_qs(query)
        try:
            filters = json.loads(params.get("filters", ["{}"])[0])
        except ValueError:
            raise Denied("unreadable filters") from None
        labels = filters.get("label") or []
        if isinstance(labels, dict):  # {"k=v": true}, the older form
            labels = [key for key, on in labels.items() if on]
        project = f"{PROJECT_LABEL}={self.project}"
        services = {f"{SERVICE_LABEL}={service}" for service in self.services}
        if project not in labels or not services & set(labels):
            raise Denied("a list must filter on this project and one of its worker services")

    def check_create(self, version: str, body: dict) -> None:
        labels = body.get("Labels") or {}
        if not self._ours(labels):
            raise Denied("a new container must be a worker of this project")
        service = labels[SERVICE_LABEL]
        filters = json.dumps({"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
        existing = self.upstream.json(
            f"{version}/containers/json?" + urllib.parse.urlencode({"all": "1", "filters": filters})
        )
        # Docker and Podman spell image IDs with or without the sha256: prefix.
        images = {_image_id(c.get(key)) for c in existing for key in ("ImageID", "Image")} - {""}
        if _image_id(body.get("Image")) not in images:
            raise Denied(f"the image must be the one {service}'s containers run")
        host = body.get("HostConfig") or {}
        if host.get("Privileged"):
            raise Denied("privileged containers are not allowed")
        if host.get("Binds") or host.get("Devices") or host.get("CapAdd") or host.get("DeviceRequests"):
            raise Denied("binds, devices and added capabilities are not allowed")
        for mount in host.get("Mounts") or []:
            if (mount.get("Type") or "bind") == "bind":
                raise Denied("bind mounts are not allowed")
        for key in HOST_NAMESPACES:
            value = str(host.get(key) or "")
            if value == "host" or value.startswith("container:"):
                raise Denied(f"{key}={value} is not allowed")
        network = str(host.get("NetworkMode") or "")
        if network and not network.startswith(f"{self.project}_"):
            raise Denied(f"network {network} is not one of this project's")
        for option in host.get("SecurityOpt") or []:
            if "unconfined" in option or option.startswith("label=disable"):
                raise Denied(f"security option {option} is not allowed")

    def check(self, method: str, path: str, query: str, body: bytes) -> None:
        """Raise Denied unless the request is one the autoscaler makes, for this project."""
        match = _VERSION.match(path)
        version = match.group() if match else ""
        route = path[len(version):]
        if method in ("GET", "HEAD") and route == "/_ping":
            return
        if method == "GET" and route == "/containers/json":
            return self.check_list(query)
        if method == "POST" and route == "/containers/create":
            return self.check_create(version, _json_body(body))
        container = _CONTAINER.match(route)
        if container:
            cid, action = container.groups()
            allowed = {("GET", "/json"), ("POST", "/start"), ("POST", "/stop"), ("DELETE", None)}
            if (method, action) not in allowed:
                raise Denied(f"{method} {route} is not allowed")
            self.owned(version, cid)
            return None
        network = _NETWORK_CONNECT.match(route)
        if method == "POST" and network:
            if not network.group(1).startswith(f"{self.project}_"):
                raise Denied(f"network {network.group(1)} is not one of this project's")
            self.owned(version, str(_json_body(body).get("Container") or ""))
            return None
        raise Denied(f"{method} {route} is not allowed")


def _image_id(value) -> str:
    return str(value or "").removeprefix("sha256:")


def _json_body(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise Denied("the body is not JSON") from None
    if not isinstance(value, dict):
        raise Denied("the body is not a JSON object")
    return value


def make_handler(policy: Policy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self):
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY or self.headers.get("Transfer-Encoding"):
                return self._deny("bodies must have a Content-Length of at most 1 MiB")
            body = self.rfile.read(length) if length else b""
            try:
                policy.check(self.command, parsed.path, parsed.query, body)
            except Denied as exc:
                return self._deny(str(exc))
            except (OSError, http.client.HTTPException) as exc:
                return self._send(502, {"message": f"engine unreachable: {exc}"})
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            try:
                status, resp_headers, data = policy.upstream.request(
                    self.command, self.path, body or None, headers
                )
            except (OSError, http.client.HTTPException) as exc:
                return self._send(502, {"message": f"engine unreachable: {exc}"})
            log.info("forwarded", extra={"method": self.command, "path": parsed.path, "status": status})
            self.send_response(status)
            for name, value in resp_headers:
                if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _deny(self, reason: str):
            log.warning("denied", extra={"method": self.command, "path": self.path, "reason": reason})
            self._send(403, {"message": f"celery-stack-engine-proxy: {reason}"})

        def _send(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = _handle

        def log_message(self, *_args):  # JSON logs above instead
            pass

    return Handler


def serve(upstream: str, port: int, project: str, services: set[str], host: str = "0.0.0.0"):  # noqa: S104
    policy = Policy(Upstream(upstream), project, services)
    server = ThreadingHTTPServer((host, port), make_handler(policy))
    server.daemon_threads = True
    return server


def unix_socket(raw: str) -> str:
    try:
        socket_path(raw)
    except EngineError as exc:
        raise ValueError(f"a unix socket (unix:///path); {exc}") from None
    return raw


PROJECT = Option(
    "ENGINE_PROXY_PROJECT", "", "The Compose project whose worker containers may be managed.", required=True
)
SERVICES = Option(
    "ENGINE_PROXY_SERVICES", "worker-default,worker-high", "The worker services, comma-separated.", parse=name_list
)
UPSTREAM = Option(
    "ENGINE_PROXY_UPSTREAM", "unix:///run/engine.sock", "The engine's API socket, mounted in.", parse=unix_socket
)
PORT = Option("ENGINE_PROXY_PORT", "2375", "Port for the autoscaler.", parse=integer, minimum=1, maximum=65535)
LOG_LEVEL = Option("ENGINE_PROXY_LOG_LEVEL", "INFO", "Log level.", choices=LOG_LEVELS)
OPTIONS = (PROJECT, SERVICES, UPSTREAM, PORT, LOG_LEVEL)


@dataclass(frozen=True)
class Settings:
    project: str
    services: tuple[str, ...]
    upstream: str
    port: int
    log_level: str


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    return Settings(
        project=PROJECT.read(env),
        services=SERVICES.read(env),
        upstream=UPSTREAM.read(env),
        port=PORT.read(env),
        log_level=LOG_LEVEL.read(env),
    )


def main(argv=None) -> int:
    usage = f"{__doc__}\n{describe(OPTIONS)}"
    settings = start(sys.argv[1:] if argv is None else argv, usage, load, log)
    services = set(settings.services)
    server = serve(settings.upstream, settings.port, settings.project, services)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("celery-stack-engine-proxy starting", extra={"project": settings.project, "services": sorted(services)})
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
