"""The replicas of a Compose worker service, through the engine API: counted from Compose's
labels, added as clones of a running replica, removed newest first after a warm shutdown."""

from __future__ import annotations

import logging
import re
import threading
import time

from ..engine import Engine, EngineError
from .settings import PoolSettings

log = logging.getLogger("celery_stack_autoscaler")

NUMBER_LABEL = "com.docker.compose.container-number"
# Stopped by us and not yet removed: the label cannot be changed on a running container, so the
# autoscaler remembers them (a restart forgets them; the engine still finishes the stop).
ALIVE_STATES = {"created", "running", "restarting"}


class Service:
    """The replicas of one Compose service, as the engine sees them."""

    def __init__(self, engine: Engine, project: str, pool: PoolSettings):
        self.engine = engine
        self.project = project
        self.pool = pool
        self.draining: set[str] = set()  # ids being stopped: no longer counted as replicas
        self.lock = threading.Lock()

    def _all(self) -> list[dict]:
        return self.engine.service_containers(self.project, self.pool.service)

    def replicas(self) -> list[dict]:
        with self.lock:
            return [c for c in self._all() if c.get("State") in ALIVE_STATES and c["Id"] not in self.draining]

    @staticmethod
    def number(c: dict) -> int:
        try:
            return int((c.get("Labels") or {}).get(NUMBER_LABEL, "0"))
        except ValueError:
            return 0

    def scale_up(self, count: int) -> list[str]:
        running = [c for c in self.replicas() if c.get("State") == "running"]
        if not running:
            raise EngineError(
                f"no running replica of {self.pool.service} to clone (project {self.project}); start one with `make up`"
            )
        template = self.engine.inspect(min(running, key=self.number)["Id"])
        used = {self.number(c) for c in self._all()}
        names = []
        for _ in range(count):
            number = 1
            while number in used:
                number += 1
            used.add(number)
            name = replica_name(template["Name"], number)
            body, more_networks = clone_spec(template, name, number)
            cid = self.engine.create(name, body)
            try:
                for net, endpoint in more_networks:
                    self.engine.connect(net, cid, endpoint)
                self.engine.start(cid)
            except EngineError:
                self.engine.remove(cid)
                raise
            names.append(name)
        return names

    def scale_down(self, count: int, on_done) -> list[str]:
        """Start the warm shutdown of the `count` newest replicas; each runs in its own thread
        because a stop waits up to the grace period (minutes on the default pool)."""
        victims = sorted(self.replicas(), key=self.number, reverse=True)[:count]
        names = []
        for c in victims:
            with self.lock:
                self.draining.add(c["Id"])
            name = (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")
            names.append(name)
            threading.Thread(target=self._drain, args=(c["Id"], name, on_done), daemon=True).start()
        return names

    def _drain(self, cid: str, name: str, on_done) -> None:
        started = time.monotonic()
        try:
            # The stop timeout Compose set from stop_grace_period: longer than the pool's hard
            # time limit, so a running task finishes before the engine would SIGKILL.
            grace = self.engine.inspect(cid)["Config"].get("StopTimeout") or 10
            self.engine.stop(cid, grace)
            # 0 = the worker finished its tasks and exited; 137 would mean the grace ran out.
            exit_code = self.engine.inspect(cid)["State"].get("ExitCode")
            self.engine.remove(cid)
            log.info(
                "replica removed",
                extra={
                    "pool": self.pool.name,
                    "container": name,
                    "drain_seconds": round(time.monotonic() - started, 1),
                    "exit_code": exit_code,
                },
            )
            on_done(self.pool.name, True)
        except EngineError as exc:
            log.error("replica stop failed", extra={"pool": self.pool.name, "container": name, "error": str(exc)})
            on_done(self.pool.name, False)
        finally:
            with self.lock:
                self.draining.discard(cid)


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
    cfg["Labels"] = {**(cfg.get("Labels") or {}), NUMBER_LABEL: str(number)}
    host = {k: v for k, v in template["HostConfig"].items() if k not in _DROP_HOST}
    if host.get("NanoCpus"):
        # Podman reports `cpus:` both ways; create accepts only one of them.
        host.pop("CpuPeriod", None)
        host.pop("CpuQuota", None)
    if host.get("Ulimits"):
        # Podman reports RLIMIT_NOFILE; create takes Docker's names (nofile).
        host["Ulimits"] = [{**u, "Name": u["Name"].lower().removeprefix("rlimit_")} for u in host["Ulimits"]]
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
