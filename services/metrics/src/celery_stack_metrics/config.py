"""Settings from the environment, with errors that name the variable."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

DEFAULT_POOLS = {
    "default": {"queues": ["default"], "concurrency": 2},
    "high": {"queues": ["high"], "concurrency": 4},
}


class ConfigError(Exception):
    """The process must not start half-configured."""


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]
    concurrency: int


@dataclass(frozen=True)
class Settings:
    broker_url: str
    pools: tuple[Pool, ...]
    extra_queues: tuple[str, ...] = ()
    host: str = "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces in its container
    port: int = 9809
    poll_interval: float = 5.0
    worker_timeout: float = 30.0
    worker_expiry: float = 900.0
    beat_task: str = "jobs.tasks.beat_heartbeat"
    max_tracked_tasks: int = 100_000
    transport_options: dict = field(default_factory=dict)
    log_level: str = "INFO"

    @property
    def queues(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for pool in self.pools:
            for q in pool.queues:
                seen[q] = None
        for q in self.extra_queues:
            seen[q] = None
        return tuple(seen)


def parse_pools(raw: str) -> tuple[Pool, ...]:
    example = '{"default": {"queues": ["default"], "concurrency": 2}}'
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"METRICS_POOLS is not valid JSON ({exc}); expected e.g. {example}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"METRICS_POOLS must be a non-empty JSON object, e.g. {example}")
    pools = []
    for name, spec in data.items():
        if not isinstance(name, str) or not name or "@" in name:
            raise ConfigError(f"METRICS_POOLS: invalid pool name {name!r}")
        if not isinstance(spec, dict):
            raise ConfigError(f"METRICS_POOLS[{name!r}] must be an object with 'queues' and 'concurrency'")
        queues = spec.get("queues")
        if (
            not isinstance(queues, list)
            or not queues
            or not all(isinstance(q, str) and q for q in queues)
        ):
            raise ConfigError(f"METRICS_POOLS[{name!r}].queues must be a non-empty list of queue names")
        conc = spec.get("concurrency")
        if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
            raise ConfigError(f"METRICS_POOLS[{name!r}].concurrency must be a positive integer, got {conc!r}")
        unknown = set(spec) - {"queues", "concurrency"}
        if unknown:
            raise ConfigError(f"METRICS_POOLS[{name!r}] has unknown keys: {sorted(unknown)}")
        pools.append(Pool(name=name, queues=tuple(queues), concurrency=conc))
    return tuple(pools)


def number(name: str, raw: str, default, kind=float, minimum: float = 0.0, inclusive=False):
    """Parse one numeric setting: `default` when empty, else finite and above `minimum`
    (or equal to it with `inclusive`), with an error that names the variable."""
    raw = raw.strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    too_small = value < minimum if inclusive else value <= minimum
    if too_small or not math.isfinite(value):
        bound = f">= {minimum}" if inclusive else f"greater than {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {raw!r}")
    return value


def _number(env, name: str, default: float, kind=float, minimum: float = 0.0):
    return number(name, env.get(name, ""), default, kind, minimum)


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    broker_url = env.get("CELERY_BROKER_URL", "").strip()
    if not broker_url:
        raise ConfigError(
            "Required environment variable CELERY_BROKER_URL is not set "
            "(e.g. redis://:secret@redis:6379/0 or amqp://user:pass@rabbitmq:5672//)."
        )
    raw_pools = env.get("METRICS_POOLS", "").strip()
    pools = parse_pools(raw_pools) if raw_pools else parse_pools(json.dumps(DEFAULT_POOLS))
    raw_opts = env.get("METRICS_BROKER_TRANSPORT_OPTIONS", "").strip()
    transport_options = {}
    if raw_opts:
        try:
            transport_options = json.loads(raw_opts)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"METRICS_BROKER_TRANSPORT_OPTIONS is not valid JSON ({exc})") from None
        if not isinstance(transport_options, dict):
            raise ConfigError("METRICS_BROKER_TRANSPORT_OPTIONS must be a JSON object")
    worker_timeout = _number(env, "METRICS_WORKER_TIMEOUT", 30.0)
    worker_expiry = _number(env, "METRICS_WORKER_EXPIRY", 900.0)
    if worker_expiry < worker_timeout:
        raise ConfigError("METRICS_WORKER_EXPIRY must be >= METRICS_WORKER_TIMEOUT")
    return Settings(
        broker_url=broker_url,
        pools=pools,
        extra_queues=tuple(q.strip() for q in env.get("METRICS_EXTRA_QUEUES", "").split(",") if q.strip()),
        host=env.get("METRICS_HOST", "").strip() or "0.0.0.0",  # noqa: S104
        port=int(_number(env, "METRICS_PORT", 9809, int)),
        poll_interval=_number(env, "METRICS_POLL_INTERVAL", 5.0),
        worker_timeout=worker_timeout,
        worker_expiry=worker_expiry,
        beat_task=env.get("METRICS_BEAT_TASK", "").strip() or "jobs.tasks.beat_heartbeat",
        max_tracked_tasks=int(_number(env, "METRICS_MAX_TRACKED_TASKS", 100_000, int)),
        transport_options=transport_options,
        log_level=(env.get("METRICS_LOG_LEVEL", "").strip() or "INFO").upper(),
    )
