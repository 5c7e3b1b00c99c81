"""The autoscaler's settings: each environment variable declared once (envopts.Option).

The knob defaults are the Helm chart's autoscaling values, so Compose and Kubernetes scale alike
(compose/README.md, "Autoscaling"). Each knob can be set for one pool: AUTOSCALE_HIGH_MAX_REPLICAS
before AUTOSCALE_MAX_REPLICAS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..engine import Engine, EngineError
from ..envopts import LOG_LEVELS, ConfigError, Option, http_url, integer, json_object, number
from .scaling import Knobs, Policy


def pool_names(raw: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not names or len(set(names)) != len(names) or any("@" in n for n in names):
        raise ValueError("a comma-separated list of distinct pool names")
    return names


def string_labels(raw: str) -> dict:
    labels = json_object(raw)
    if not all(isinstance(v, str) for v in labels.values()):
        raise ValueError('a JSON object of strings, e.g. {"job": "x"}')
    return labels


def engine_host(raw: str) -> str:
    try:
        Engine(raw)  # checks the form only; nothing is contacted
    except EngineError as exc:
        raise ConfigError(str(exc)) from None
    return raw


def _knob(name, default, help, parse=number, minimum=0):
    return Option(f"AUTOSCALE_{name}", default, help, parse=parse, minimum=minimum, per_pool=True)


PROJECT = Option(
    "AUTOSCALE_COMPOSE_PROJECT",
    "",
    "The Compose project whose worker services to scale (compose.autoscale.yaml sets it to the project name).",
    required=True,
)
POOLS = Option("AUTOSCALE_POOLS", "default,high", "Pools to scale, comma-separated.", parse=pool_names)
SERVICE = Option(
    "AUTOSCALE_SERVICE",
    "worker-<pool>",
    "The Compose service of a pool (set per pool only).",
    per_pool=True,
    pool_only=True,
)
POLLING_INTERVAL = Option(
    "AUTOSCALE_POLLING_INTERVAL", "15", "Seconds between polls (keda.pollingInterval).", parse=number, minimum=1
)
MIN_REPLICAS = _knob(
    "MIN_REPLICAS",
    "1",
    "Fewest replicas (minReplicas); at least 1 under Compose, where a new replica is a clone of a running one.",
    parse=integer,
    minimum=1,
)
MAX_REPLICAS = _knob("MAX_REPLICAS", "10", "Most replicas (maxReplicas).", parse=integer, minimum=1)
TARGET_PER_REPLICA = _knob(
    "TARGET_PER_REPLICA", "0", "Backlog per replica (targetPerReplica); 0 = the pool's concurrency, from the metrics."
)
COOLDOWN_PERIOD = _knob(
    "COOLDOWN_PERIOD", "300", "Seconds (keda.cooldownPeriod; only for 1 -> 0, unused while min >= 1)."
)
ACTIVATION_THRESHOLD = _knob("ACTIVATION_THRESHOLD", "0", "Backlog above which 0 -> 1 (keda; unused while min >= 1).")
UP_WINDOW = _knob("SCALE_UP_STABILIZATION_WINDOW", "0", "Seconds (behavior.scaleUp.stabilizationWindowSeconds).")
UP_PODS = _knob("SCALE_UP_PODS", "4", "Replicas added per period at most (scaleUp Pods policy; 0 = off).", integer)
UP_PERCENT = _knob(
    "SCALE_UP_PERCENT", "100", "Percent added per period at most (scaleUp Percent policy; 0 = off).", integer
)
UP_PERIOD = _knob("SCALE_UP_PERIOD", "30", "Seconds, the period of the scale-up policies.", minimum=1)
DOWN_WINDOW = _knob(
    "SCALE_DOWN_STABILIZATION_WINDOW", "300", "Seconds (behavior.scaleDown.stabilizationWindowSeconds)."
)
DOWN_PODS = _knob(
    "SCALE_DOWN_PODS", "0", "Replicas removed per period at most (scaleDown Pods policy; 0 = off).", integer
)
DOWN_PERCENT = _knob(
    "SCALE_DOWN_PERCENT", "25", "Percent removed per period at most (scaleDown Percent policy; 0 = off).", integer
)
DOWN_PERIOD = _knob("SCALE_DOWN_PERIOD", "60", "Seconds, the period of the scale-down policies.", minimum=1)
METRICS_URL = Option(
    "AUTOSCALE_METRICS_URL",
    "http://queue-metrics:9809/metrics",
    "The companion's /metrics (celery-stack-metrics).",
    parse=http_url,
)
PROMETHEUS_URL = Option(
    "AUTOSCALE_PROMETHEUS_URL",
    "",
    "A Prometheus server to run the chart's query on, instead of the companion.",
    parse=http_url,
)
PROMETHEUS_LABELS = Option(
    "AUTOSCALE_PROMETHEUS_LABELS",
    "",
    'Label matchers added to that query, as JSON, e.g. {"job": "x"}.',
    parse=string_labels,
)
DOCKER_HOST = Option(
    "DOCKER_HOST",
    "unix:///var/run/docker.sock",
    "The engine API: a unix socket, or the engine proxy by service name (tcp://engine-proxy:2375).",
    parse=engine_host,
)
HOST = Option("AUTOSCALE_HOST", "0.0.0.0", "Address of /metrics and /healthz.")  # noqa: S104 - inside its container
PORT = Option("AUTOSCALE_PORT", "9810", "Port of /metrics and /healthz.", parse=integer, minimum=1, maximum=65535)
LOG_LEVEL = Option("AUTOSCALE_LOG_LEVEL", "INFO", "Log level.", choices=LOG_LEVELS)
OPTIONS = (
    PROJECT, POOLS, SERVICE, POLLING_INTERVAL, MIN_REPLICAS, MAX_REPLICAS, TARGET_PER_REPLICA, COOLDOWN_PERIOD,
    ACTIVATION_THRESHOLD, UP_WINDOW, UP_PODS, UP_PERCENT, UP_PERIOD, DOWN_WINDOW, DOWN_PODS, DOWN_PERCENT,
    DOWN_PERIOD, METRICS_URL, PROMETHEUS_URL, PROMETHEUS_LABELS, DOCKER_HOST, HOST, PORT, LOG_LEVEL,
)  # fmt: skip


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
    host: str
    port: int
    log_level: str
    prometheus_labels: dict


def load_pool(env, name: str, polling_interval: float) -> PoolSettings:
    up = Policy(
        stabilization_window=UP_WINDOW.read(env, name),
        pods=UP_PODS.read(env, name),
        percent=UP_PERCENT.read(env, name),
        period=UP_PERIOD.read(env, name),
    )
    down = Policy(
        stabilization_window=DOWN_WINDOW.read(env, name),
        pods=DOWN_PODS.read(env, name),
        percent=DOWN_PERCENT.read(env, name),
        period=DOWN_PERIOD.read(env, name),
    )
    if up.pods == 0 and up.percent == 0:
        raise ConfigError(f"pool {name}: SCALE_UP_PODS and SCALE_UP_PERCENT are both 0: it could never scale up")
    if down.pods == 0 and down.percent == 0:
        raise ConfigError(f"pool {name}: SCALE_DOWN_PODS and SCALE_DOWN_PERCENT are both 0: it could never scale down")
    knobs = Knobs(
        min_replicas=MIN_REPLICAS.read(env, name),
        max_replicas=MAX_REPLICAS.read(env, name),
        target_per_replica=TARGET_PER_REPLICA.read(env, name),
        polling_interval=polling_interval,
        cooldown_period=COOLDOWN_PERIOD.read(env, name),
        activation_threshold=ACTIVATION_THRESHOLD.read(env, name),
        scale_up=up,
        scale_down=down,
    )
    if knobs.max_replicas < knobs.min_replicas:
        raise ConfigError(
            f"pool {name}: MAX_REPLICAS ({knobs.max_replicas}) is below MIN_REPLICAS ({knobs.min_replicas})"
        )
    return PoolSettings(name=name, service=SERVICE.read(env, name), knobs=knobs)


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    polling_interval = POLLING_INTERVAL.read(env)
    return Settings(
        project=PROJECT.read(env),
        docker_host=DOCKER_HOST.read(env),
        metrics_url=METRICS_URL.read(env),
        prometheus_url=PROMETHEUS_URL.read(env),
        pools=tuple(load_pool(env, name, polling_interval) for name in POOLS.read(env)),
        polling_interval=polling_interval,
        host=HOST.read(env),
        port=PORT.read(env),
        log_level=LOG_LEVEL.read(env),
        prometheus_labels=PROMETHEUS_LABELS.read(env),
    )
