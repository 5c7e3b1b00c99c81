"""The few Docker Engine API calls the autoscaler needs, over the engine's unix socket.

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
    def __init__(self, docker_host: str, timeout: float = 30.0):
        self.path = socket_path(docker_host)
        self.timeout = timeout

    def _call(self, method: str, url: str, body=None, timeout: float | None = None, ok=(200, 201, 204, 304)):
        conn = _UnixConnection(self.path, timeout or self.timeout)
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
        conn = _UnixConnection(self.path, 5)
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


# Per-container settings the engine assigns itself; copying them would clash with the template
# (same hostname = same Celery node name) or is rejected by create.
_DROP_CONFIG = {"Hostname", "Domainname", "MacAddress"}
_DROP_ENV = ("HOSTNAME=",)
_DROP_HOST = {"ContainerIDFile", "ConsoleSize", "Runtime", "NetworkMode", "Links"}


def clone_spec(template: dict, name: str, number: int) -> tuple[dict, list[tuple[str, dict]]]:
    """The create body of a new replica cloned from `template` (an inspect result).

    Same image (by ID, so a retagged image does not change what the pool runs), command, env,
    labels (with the next container-number, so Compose counts and removes it as a replica),
    healthcheck, user, stop signal/timeout, resources, security options. Networks keep the
    service alias. Returns (body, [(network, endpoint config)...]) for the networks after the
    first, which are connected before start (the API creates with one network).
    """
    cfg = {k: v for k, v in template["Config"].items() if k not in _DROP_CONFIG}
    cfg["Image"] = template["Image"]
    cfg["Env"] = [e for e in cfg.get("Env") or [] if not e.startswith(_DROP_ENV)]
    cfg["Labels"] = {**(cfg.get("Labels") or {}), "com.docker.compose.container-number": str(number)}
    host = {k: v for k, v in template["HostConfig"].items() if k not in _DROP_HOST}
    if host.get("NanoCpus"):
        # Podman reports `cpus:` both ways; create accepts only one of them.
        host.pop("CpuPeriod", None)
        host.pop("CpuQuota", None)
    if host.get("Ulimits"):
        # Podman reports RLIMIT_NOFILE; create takes Docker's names (nofile).
        host["Ulimits"] = [
            {**u, "Name": u["Name"].lower().removeprefix("rlimit_")} for u in host["Ulimits"]
        ]
    old_name = template["Name"].lstrip("/")
    old_ids = {template["Id"][:12], template["Id"]}
    endpoints = []
    for net, ep in (template["NetworkSettings"].get("Networks") or {}).items():
        aliases = [a for a in ep.get("Aliases") or [] if a != old_name and a not in old_ids]
        endpoints.append((net, {"Aliases": [*aliases, name]}))
    if endpoints:
        first, rest = endpoints[0], endpoints[1:]
        host["NetworkMode"] = first[0]
        cfg["NetworkingConfig"] = {"EndpointsConfig": {first[0]: first[1]}}
    else:
        rest = []
    cfg["HostConfig"] = host
    return cfg, rest


_NUMBER = re.compile(r"-(\d+)$")


def replica_name(template_name: str, number: int) -> str:
    """celery-stack-worker-high-1 -> celery-stack-worker-high-<number> (Compose v2 naming)."""
    base = template_name.lstrip("/")
    return _NUMBER.sub(f"-{number}", base) if _NUMBER.search(base) else f"{base}-{number}"
