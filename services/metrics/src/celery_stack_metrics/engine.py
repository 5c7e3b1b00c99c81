"""The few Docker Engine API calls the autoscaler needs (autoscaler/replicas.py), over the
engine's unix socket or the engine proxy; engine_proxy.py reaches the engine with it too.

Works with Docker and with Podman's Docker-compatible API (`podman system service`). Standard
library only: the exporter image has no docker SDK, and these are six plain HTTP calls.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.parse

API = "/v1.41"  # Docker 20.10+, and what Podman 4's compat API serves


class EngineError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("engine", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_path(docker_host: str) -> str:
    """unix:///var/run/docker.sock -> /var/run/docker.sock. Only unix sockets: no TCP engine API."""
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://") :]
    if docker_host.startswith("/"):
        return docker_host
    raise EngineError(f"DOCKER_HOST must be a unix socket (unix:///path), got {docker_host!r}")


class Engine:
    """DOCKER_HOST is the engine's unix socket, or `tcp://engine-proxy:2375`: the filtering
    proxy (engine_proxy.py) on a network only it and the autoscaler share."""

    def __init__(self, docker_host: str, timeout: float = 30.0):
        self.tcp = None
        if docker_host.startswith("tcp://"):
            # Only the proxy, by its Compose service name: an engine's own TCP API (by address,
            # usually unauthenticated) stays refused.
            parsed = urllib.parse.urlsplit(docker_host)
            host = parsed.hostname or ""
            if not re.fullmatch(r"[a-z][a-z0-9-]*", host):
                raise EngineError(
                    "DOCKER_HOST must be a unix socket (unix:///path) or the engine proxy by "
                    f"service name (tcp://engine-proxy:2375), got {docker_host!r}"
                )
            self.tcp = (host, parsed.port or 2375)
            self.path = docker_host
        else:
            self.path = socket_path(docker_host)
        self.timeout = timeout

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.tcp:
            return http.client.HTTPConnection(*self.tcp, timeout=timeout)
        return _UnixConnection(self.path, timeout)

    def _call(self, method: str, url: str, body=None, timeout: float | None = None, ok=(200, 201, 204, 304)):
        conn = self._connection(timeout or self.timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, API + url, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"engine API at {self.path} unreachable: {exc}") from exc
        finally:
            conn.close()
        if resp.status not in ok:
            raise EngineError(f"{method} {url}: HTTP {resp.status}: {data[:300].decode(errors='replace').strip()}")
        return json.loads(data) if data.strip() else None

    def ping(self) -> None:
        conn = self._connection(5)
        try:
            conn.request("GET", "/_ping")
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"engine API at {self.path} unreachable: {exc}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise EngineError(f"engine API at {self.path}: /_ping answered HTTP {resp.status}")

    def service_containers(self, project: str, service: str) -> list[dict]:
        """Every container (any state) of a Compose service, from the labels Compose sets."""
        filters = {"label": [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]}
        query = urllib.parse.urlencode({"all": "1", "filters": json.dumps(filters)})
        return self._call("GET", f"/containers/json?{query}") or []

    def inspect(self, cid: str) -> dict:
        return self._call("GET", f"/containers/{cid}/json")

    def create(self, name: str, body: dict) -> str:
        query = urllib.parse.urlencode({"name": name})
        return self._call("POST", f"/containers/create?{query}", body)["Id"]

    def connect(self, network: str, cid: str, endpoint: dict) -> None:
        self._call("POST", f"/networks/{network}/connect", {"Container": cid, "EndpointConfig": endpoint})

    def start(self, cid: str) -> None:
        self._call("POST", f"/containers/{cid}/start")

    def stop(self, cid: str, grace: int) -> None:
        """SIGTERM (the image's stop signal), SIGKILL after `grace` s. Blocks until it has exited."""
        self._call("POST", f"/containers/{cid}/stop?t={int(grace)}", timeout=grace + 60)

    def remove(self, cid: str) -> None:
        self._call("DELETE", f"/containers/{cid}?v=1&force=1", ok=(200, 204, 404))
