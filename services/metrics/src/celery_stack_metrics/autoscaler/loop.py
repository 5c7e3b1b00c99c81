"""The autoscaler process: every polling interval read the signal, decide each pool's replicas,
then act on the engine; serve /metrics and /healthz meanwhile."""

from __future__ import annotations

import logging
import signal  # the standard library's; .signal below is the scaling signal
import sys
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from .. import __version__
from ..cli import start
from ..engine import Engine, EngineError
from ..envopts import describe
from .replicas import Service
from .scaling import PoolScaler
from .settings import OPTIONS, PoolSettings, Settings, load
from .signal import MetricsError, Signal, read_companion, read_prometheus

log = logging.getLogger("celery_stack_autoscaler")


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
    usage = f"{sys.modules[__package__].__doc__}\n{describe(OPTIONS)}"  # the package's overview
    settings = start(sys.argv[1:] if argv is None else argv, usage, load, log)
    disable_created_metrics()
    registry = CollectorRegistry()
    engine = Engine(settings.docker_host)
    scaler = Autoscaler(settings, engine, registry)

    from ..server import make_server

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
