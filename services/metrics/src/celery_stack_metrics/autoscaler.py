"""celery-stack-autoscaler: queue-driven autoscaling of the Compose worker pools.

Every polling interval it reads each pool's backlog (queued + active tasks) from
celery-stack-metrics (or Prometheus), computes the replica count the chart's KEDA ScaledObject
would (scaling.py), and makes the Compose service `worker-<pool>` run that many replicas through
the engine's Docker-compatible API:

- up: new containers cloned from a running replica of the service (scaling.clone_spec), started;
- down: the newest replicas get SIGTERM and the pool's stop_grace_period (a Celery warm
  shutdown: no new tasks, running ones finish), then are removed.

Configured by environment variables (compose/README.md, "Autoscaling").
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.parser import text_string_to_metric_families

from . import __version__
from .cli import start
from .config import ConfigError, number
from .engine import Engine, EngineError, clone_spec, replica_name
from .scaling import Knobs, Policy, PoolScaler

log = logging.getLogger("celery_stack_autoscaler")

NUMBER_LABEL = "com.docker.compose.container-number"
# Stopped by us and not yet removed: the label cannot be changed on a running container, so the
# autoscaler remembers them (a restart forgets them; the engine still finishes the stop).
ALIVE_STATES = {"created", "running", "restarting"}


# ---- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolSettings:
    name: str
    service: str
    knobs: Knobs


@dataclass(frozen=True)
class Settings:
    project: str
    docker_host: str
    metrics_url: str
    prometheus_url: str
    pools: tuple[PoolSettings, ...]
    polling_interval: float
    host: str = "0.0.0.0"  # noqa: S104 - it listens inside its container
    port: int = 9810
    log_level: str = "INFO"
    prometheus_labels: dict = field(default_factory=dict)


def _get(env, pool: str | None, knob: str) -> str:
    """AUTOSCALE_<POOL>_<KNOB> overrides AUTOSCALE_<KNOB>."""
    if pool:
        raw = env.get(f"AUTOSCALE_{pool.upper().replace('-', '_')}_{knob}", "").strip()
        if raw:
            return raw
    return env.get(f"AUTOSCALE_{knob}", "").strip()


def _num(env, pool, knob, default, kind=float, minimum=0):
    name = f"AUTOSCALE_{pool.upper()}_{knob} (or AUTOSCALE_{knob})" if pool else f"AUTOSCALE_{knob}"
    return number(name, _get(env, pool, knob), default, kind, minimum, inclusive=True)


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    project = env.get("AUTOSCALE_COMPOSE_PROJECT", "").strip()
    if not project:
        raise ConfigError(
            "AUTOSCALE_COMPOSE_PROJECT is not set: the Compose project whose worker services to scale "
            "(compose.autoscale.yaml sets it to the project name)."
        )
    pools_raw = env.get("AUTOSCALE_POOLS", "").strip() or "default,high"
    names = [p.strip() for p in pools_raw.split(",") if p.strip()]
    if not names or len(set(names)) != len(names) or any("@" in n for n in names):
        raise ConfigError(f"AUTOSCALE_POOLS must be a comma-separated list of distinct pool names, got {pools_raw!r}")
    polling = _num(env, None, "POLLING_INTERVAL", 15.0, minimum=1)
    pools = []
    for name in names:
        up = Policy(
            stabilization_window=_num(env, name, "SCALE_UP_STABILIZATION_WINDOW", 0.0),
            pods=_num(env, name, "SCALE_UP_PODS", 4, int),
            percent=_num(env, name, "SCALE_UP_PERCENT", 100, int),
            period=_num(env, name, "SCALE_UP_PERIOD", 30.0, minimum=1),
        )
        down = Policy(
            stabilization_window=_num(env, name, "SCALE_DOWN_STABILIZATION_WINDOW", 300.0),
            pods=_num(env, name, "SCALE_DOWN_PODS", 0, int),
            percent=_num(env, name, "SCALE_DOWN_PERCENT", 25, int),
            period=_num(env, name, "SCALE_DOWN_PERIOD", 60.0, minimum=1),
        )
        if up.pods == 0 and up.percent == 0:
            raise ConfigError(f"pool {name}: SCALE_UP_PODS and SCALE_UP_PERCENT are both 0: it could never scale up")
        if down.pods == 0 and down.percent == 0:
            raise ConfigError(
                f"pool {name}: SCALE_DOWN_PODS and SCALE_DOWN_PERCENT are both 0: it could never scale down"
            )
        knobs = Knobs(
            min_replicas=_num(env, name, "MIN_REPLICAS", 1, int),
            max_replicas=_num(env, name, "MAX_REPLICAS", 10, int),
            target_per_replica=_num(env, name, "TARGET_PER_REPLICA", 0.0),
            polling_interval=polling,
            cooldown_period=_num(env, name, "COOLDOWN_PERIOD", 300.0),
            activation_threshold=_num(env, name, "ACTIVATION_THRESHOLD", 0.0),
            scale_up=up,
            scale_down=down,
        )
        if knobs.min_replicas < 1:
            # A new replica is a clone of a running one: with none left there is no template
            # (image, env, networks, labels) to clone, and the autoscaler does not parse the
            # Compose file. Scale to zero is for the chart (KEDA), not for Compose.
            raise ConfigError(
                f"AUTOSCALE_{name.upper()}_MIN_REPLICAS (or AUTOSCALE_MIN_REPLICAS) must be >= 1 under Compose: "
                "new replicas are cloned from a running one"
            )
        if knobs.max_replicas < knobs.min_replicas:
            raise ConfigError(
                f"pool {name}: MAX_REPLICAS ({knobs.max_replicas}) is below MIN_REPLICAS ({knobs.min_replicas})"
            )
        service = env.get(f"AUTOSCALE_{name.upper()}_SERVICE", "").strip() or f"worker-{name}"
        pools.append(PoolSettings(name=name, service=service, knobs=knobs))
    metrics_url = env.get("AUTOSCALE_METRICS_URL", "").strip() or "http://queue-metrics:9809/metrics"
    prometheus_url = env.get("AUTOSCALE_PROMETHEUS_URL", "").strip()
    for var, url in (("AUTOSCALE_METRICS_URL", metrics_url), ("AUTOSCALE_PROMETHEUS_URL", prometheus_url)):
        if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{var} must be an http(s) URL, got {url!r}")
    labels_raw = env.get("AUTOSCALE_PROMETHEUS_LABELS", "").strip()
    labels = {}
    if labels_raw:
        try:
            labels = json.loads(labels_raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"AUTOSCALE_PROMETHEUS_LABELS is not valid JSON ({exc})") from None
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ConfigError('AUTOSCALE_PROMETHEUS_LABELS must be a JSON object of strings, e.g. {"job": "x"}')
    docker_host = env.get("DOCKER_HOST", "").strip() or "unix:///var/run/docker.sock"
    try:
        Engine(docker_host)
    except EngineError as exc:
        raise ConfigError(str(exc)) from None
    return Settings(
        project=project,
        docker_host=docker_host,
        metrics_url=metrics_url,
        prometheus_url=prometheus_url,
        pools=tuple(pools),
        polling_interval=polling,
        host=env.get("AUTOSCALE_HOST", "").strip() or "0.0.0.0",  # noqa: S104
        port=_num(env, None, "PORT", 9810, int, minimum=1),
        log_level=(env.get("AUTOSCALE_LOG_LEVEL", "").strip() or "INFO").upper(),
        prometheus_labels=labels,
    )


# ---- the signal --------------------------------------------------------------------------------


class MetricsError(Exception):
    pass


@dataclass(frozen=True)
class Signal:
    backlog: float  # queued + active
    concurrency: float | None  # per replica, None when the source does not say


def _fetch(url: str, timeout: float = 10.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) checked in load()
            return resp.read()
    except (OSError, urllib.error.URLError) as exc:
        raise MetricsError(f"{url} unreachable: {exc}") from exc


def read_companion(url: str, pools) -> dict[str, Signal]:
    """One scrape of celery-stack-metrics; the same series the chart's KEDA query sums."""
    text = _fetch(url).decode()
    queued, active, conc = {}, {}, {}
    for fam in text_string_to_metric_families(text):
        target = {
            "celery_pool_queued_messages": queued,
            "celery_pool_active_tasks": active,
            "celery_pool_concurrency": conc,
        }.get(fam.name)
        if target is None:
            continue
        for s in fam.samples:
            pool = s.labels.get("pool")
            target[pool] = target.get(pool, 0.0) + s.value
    out = {}
    for name in pools:
        # The companion drops the queued series while the broker is unreachable: no number is
        # better than a wrong one (like the chart's ignoreNullValues: false).
        if name not in queued:
            raise MetricsError(f"{url}: no celery_pool_queued_messages for pool {name!r} (broker down?)")
        out[name] = Signal(queued[name] + active.get(name, 0.0), conc.get(name))
    return out


def _prom_query(base: str, query: str) -> float | None:
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = json.loads(_fetch(url))
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{base}: not a Prometheus API answer ({exc})") from exc
    if body.get("status") != "success":
        raise MetricsError(f"{base}: query failed: {body.get('error')}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def read_prometheus(base: str, pools, labels: dict) -> dict[str, Signal]:
    """The chart's query, verbatim, against a Prometheus server."""
    out = {}
    for name in pools:
        sel = ",".join([f'pool="{name}"', *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
        backlog = _prom_query(
            base, f"sum(celery_pool_queued_messages{{{sel}}}) + sum(celery_pool_active_tasks{{{sel}}})"
        )
        if backlog is None:
            raise MetricsError(f"{base}: empty result for pool {name!r}'s backlog")
        out[name] = Signal(backlog, _prom_query(base, f"max(celery_pool_concurrency{{{sel}}})"))
    return out


# ---- the engine side -----------------------------------------------------------------------------


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


# ---- the loop ----------------------------------------------------------------------------------


class Autoscaler:
    def __init__(self, settings: Settings, engine: Engine, registry: CollectorRegistry):
        self.s = settings
        self.engine = engine
        self.services = {p.name: Service(engine, settings.project, p) for p in settings.pools}
        self.scalers = {p.name: PoolScaler(p.knobs) for p in settings.pools}
        self.health = {"metrics_ok": False, "engine_ok": False, "last_error": None, "last_poll": None}
        labels = ["pool"]
        self.m_desired = Gauge(
            "celery_stack_autoscaler_desired_replicas", "Replicas decided.", labels, registry=registry
        )
        self.m_actual = Gauge(
            "celery_stack_autoscaler_actual_replicas", "Replicas running (not draining).", labels, registry=registry
        )
        self.m_draining = Gauge(
            "celery_stack_autoscaler_draining_replicas", "Replicas in warm shutdown.", labels, registry=registry
        )
        self.m_rec = Gauge(
            "celery_stack_autoscaler_recommended_replicas",
            "ceil(backlog / target) before stabilisation, rate limits and bounds.",
            labels,
            registry=registry,
        )
        self.m_backlog = Gauge(
            "celery_stack_autoscaler_backlog", "Queued + active tasks of the pool.", labels, registry=registry
        )
        self.m_decisions = Counter(
            "celery_stack_autoscaler_scaling_decisions",
            "Scale actions taken.",
            ["pool", "direction"],
            registry=registry,
        )
        self.m_errors = Counter(
            "celery_stack_autoscaler_errors", "Failed polls or actions.", ["kind"], registry=registry
        )
        self.m_metrics_up = Gauge(
            "celery_stack_autoscaler_metrics_up", "1 if the last metrics read succeeded.", registry=registry
        )
        self.m_engine_up = Gauge(
            "celery_stack_autoscaler_engine_up", "1 if the last engine call succeeded.", registry=registry
        )
        for p in settings.pools:
            for d in ("up", "down"):
                self.m_decisions.labels(p.name, d)
        for kind in ("metrics", "engine"):
            self.m_errors.labels(kind)

    def read_signal(self) -> dict[str, Signal]:
        names = [p.name for p in self.s.pools]
        if self.s.prometheus_url:
            return read_prometheus(self.s.prometheus_url, names, self.s.prometheus_labels)
        return read_companion(self.s.metrics_url, names)

    def _drained(self, pool: str, ok: bool) -> None:
        if not ok:
            self.m_errors.labels("engine").inc()

    def poll(self, now: float | None = None) -> None:
        self.health["last_poll"] = time.time()
        try:
            signals = self.read_signal()
        except MetricsError as exc:
            # Hold the current replica count: scaling on a missing number could shed the replicas
            # a backlog needs (the chart's KEDA would switch to its fallback count instead).
            self.health.update(metrics_ok=False, last_error=str(exc))
            self.m_metrics_up.set(0)
            self.m_errors.labels("metrics").inc()
            log.error("metrics unavailable; holding the current replica counts", extra={"error": str(exc)})
            return
        self.health["metrics_ok"] = True
        self.m_metrics_up.set(1)
        # Decide for every pool first, then act: creating containers takes seconds, and one
        # pool's scale-out must not delay the other pool's decision.
        plans = []
        for pool in self.s.pools:
            try:
                plans.append(self._decide(time.monotonic() if now is None else now, pool, signals[pool.name]))
                self.health.update(engine_ok=True)
                self.m_engine_up.set(1)
            except MetricsError as exc:
                self.health.update(metrics_ok=False, last_error=str(exc))
                self.m_errors.labels("metrics").inc()
                log.error("cannot decide", extra={"pool": pool.name, "error": str(exc)})
            except EngineError as exc:
                self._engine_failed(pool, exc)
        for plan in plans:
            if plan is None:
                continue
            try:
                self._apply(*plan)
            except EngineError as exc:
                self._engine_failed(plan[1], exc)
        if self.health["engine_ok"] and self.health["metrics_ok"]:
            self.health["last_error"] = None

    def _engine_failed(self, pool: PoolSettings, exc: EngineError) -> None:
        self.health.update(engine_ok=False, last_error=str(exc))
        self.m_engine_up.set(0)
        self.m_errors.labels("engine").inc()
        log.error("engine call failed", extra={"pool": pool.name, "error": str(exc)})

    def _decide(self, now: float, pool: PoolSettings, sig: Signal):
        service = self.services[pool.name]
        current = len(service.replicas())
        target = pool.knobs.target_per_replica or sig.concurrency
        if not target:
            raise MetricsError(f"pool {pool.name}: target per replica is 0 and the metrics carry no concurrency")
        decision = self.scalers[pool.name].decide(now, sig.backlog, target, current)
        self.m_backlog.labels(pool.name).set(sig.backlog)
        self.m_rec.labels(pool.name).set(decision.recommendation)
        self.m_desired.labels(pool.name).set(decision.desired)
        self.m_actual.labels(pool.name).set(current)
        self.m_draining.labels(pool.name).set(len(service.draining))
        if decision.desired == current:
            log.debug("steady", extra={"pool": pool.name, "replicas": current, "backlog": sig.backlog})
            return None
        log.info(
            "scaling up" if decision.desired > current else "scaling down",
            extra={
                "pool": pool.name,
                "service": pool.service,
                "backlog": sig.backlog,
                "target_per_replica": target,
                "from": current,
                "to": decision.desired,
                "recommendation": decision.recommendation,
                "reason": decision.reason,
            },
        )
        return now, pool, current, decision.desired

    def _apply(self, now: float, pool: PoolSettings, current: int, desired: int) -> None:
        service = self.services[pool.name]
        if desired > current:
            self.m_decisions.labels(pool.name, "up").inc()
            try:
                created = service.scale_up(desired - current)
            finally:
                # What was started counts even when a later create failed.
                started = len(service.replicas()) - current
                self.scalers[pool.name].applied(now, max(started, 0))
            log.info("replicas started", extra={"pool": pool.name, "containers": created})
        else:
            self.m_decisions.labels(pool.name, "down").inc()
            stopping = service.scale_down(current - desired, self._drained)
            self.scalers[pool.name].applied(now, -len(stopping))
            log.info("warm shutdown started", extra={"pool": pool.name, "containers": stopping})
        self.m_actual.labels(pool.name).set(len(service.replicas()))
        self.m_draining.labels(pool.name).set(len(service.draining))

    def healthz(self):
        ok = bool(self.health["metrics_ok"] and self.health["engine_ok"])
        return ok, dict(self.health)


def main(argv=None) -> int:
    settings = start(sys.argv[1:] if argv is None else argv, __doc__ or "", load, log)
    disable_created_metrics()
    registry = CollectorRegistry()
    engine = Engine(settings.docker_host)
    scaler = Autoscaler(settings, engine, registry)

    from .server import make_server

    try:
        server = make_server(settings.host, settings.port, registry, scaler.healthz)
    except OSError as exc:
        log.critical(f"cannot listen on {settings.host}:{settings.port}: {exc}")
        return 1
    stop = threading.Event()

    def shutdown(signum, _frame):
        # Replicas in warm shutdown finish on their own: the engine completes the stop.
        log.info("shutting down", extra={"signal": signum})
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        engine.ping()
    except EngineError as exc:
        log.error("engine not reachable yet; will keep trying", extra={"error": str(exc)})
    log.info(
        "celery-stack-autoscaler starting",
        extra={
            "version": __version__,
            "listen": f"{settings.host}:{settings.port}",
            "project": settings.project,
            "engine": settings.docker_host,
            "source": settings.prometheus_url or settings.metrics_url,
            "polling_interval": settings.polling_interval,
            "pools": {
                p.name: {
                    "service": p.service,
                    "min": p.knobs.min_replicas,
                    "max": p.knobs.max_replicas,
                    "target_per_replica": p.knobs.target_per_replica or "concurrency",
                    "scale_down_stabilization_window": p.knobs.scale_down.stabilization_window,
                }
                for p in settings.pools
            },
        },
    )

    def loop():
        while not stop.is_set():
            started = time.monotonic()
            try:
                scaler.poll()
            except Exception:
                scaler.m_errors.labels("internal").inc()
                log.exception("poll failed")
            stop.wait(max(0.0, settings.polling_interval - (time.monotonic() - started)))

    thread = threading.Thread(target=loop, name="autoscale", daemon=True)
    thread.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
