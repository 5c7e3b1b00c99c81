"""The companion's settings: each environment variable declared once (envopts.Option)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .envopts import LOG_LEVELS, ConfigError, Option, integer, json_object, name_list, number, postgres_url

DEFAULT_POOLS = {
    "default": {"queues": ["default"], "concurrency": 2},
    "high": {"queues": ["high"], "concurrency": 4},
}


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]
    concurrency: int


@dataclass(frozen=True)
class Settings:
    """What load() read; the defaults are the Options' below."""

    broker_url: str
    pools: tuple[Pool, ...]
    extra_queues: tuple[str, ...]
    host: str
    port: int
    poll_interval: float
    worker_timeout: float
    worker_expiry: float
    beat_task: str
    max_tracked_tasks: int
    transport_options: dict
    log_level: str
    database_url: str  # "" = no database gauges
    database_timeout: float

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


BROKER_URL = Option(
    "CELERY_BROKER_URL", "",
    "The broker to measure: redis://, rediss://, sentinel:// or amqp:// (e.g. redis://:secret@redis:6379/0).",
    required=True,
)
POOLS = Option(
    "METRICS_POOLS", json.dumps(DEFAULT_POOLS),
    "The worker pools as JSON {pool: {queues: [...], concurrency: n}}; pool = the worker node name before @.",
    parse=parse_pools,
)
EXTRA_QUEUES = Option(
    "METRICS_EXTRA_QUEUES", "", "Comma-separated queues to measure that no pool consumes.", parse=name_list
)
HOST = Option("METRICS_HOST", "0.0.0.0", "Address of /metrics and /healthz.")  # noqa: S104 - inside its container
PORT = Option("METRICS_PORT", "9809", "Port of /metrics and /healthz.", parse=integer, minimum=1, maximum=65535)
POLL_INTERVAL = Option(
    "METRICS_POLL_INTERVAL", "5", "Seconds between broker polls.", parse=number, minimum=0, above=True
)
WORKER_TIMEOUT = Option(
    "METRICS_WORKER_TIMEOUT", "30", "Seconds without a heartbeat before a worker stops counting as live.",
    parse=number, minimum=0, above=True,
)
WORKER_EXPIRY = Option(
    "METRICS_WORKER_EXPIRY", "900",
    "Seconds without a heartbeat before a worker's series is dropped (>= METRICS_WORKER_TIMEOUT).",
    parse=number, minimum=0, above=True,
)
BEAT_TASK = Option(
    "METRICS_BEAT_TASK", "jobs.tasks.beat_heartbeat", "The periodic task whose runs show that beat is alive."
)
MAX_TRACKED_TASKS = Option(
    "METRICS_MAX_TRACKED_TASKS", "100000",
    "Sent tasks held until their start, for the wait-time histogram (bounds memory).",
    parse=integer, minimum=0, above=True,
)
TRANSPORT_OPTIONS = Option(
    "METRICS_BROKER_TRANSPORT_OPTIONS", "",
    "JSON object, the app's broker_transport_options (sep, priority_steps, global_keyprefix, ...).",
    parse=json_object,
)
DATABASE_URL = Option(
    "DATABASE_URL", "",
    "The app's Postgres (postgres://...): outbox and dead-letter gauges. Unset: none are exported.",
    parse=postgres_url,
)
DATABASE_TIMEOUT = Option(
    "METRICS_DATABASE_TIMEOUT", "2", "Seconds a database connect or query may take.",
    parse=number, minimum=0, above=True, maximum=60,
)
LOG_LEVEL = Option("METRICS_LOG_LEVEL", "INFO", "Log level.", choices=LOG_LEVELS)
OPTIONS = (
    BROKER_URL, POOLS, EXTRA_QUEUES, HOST, PORT, POLL_INTERVAL, WORKER_TIMEOUT, WORKER_EXPIRY, BEAT_TASK,
    MAX_TRACKED_TASKS, TRANSPORT_OPTIONS, DATABASE_URL, DATABASE_TIMEOUT, LOG_LEVEL,
)  # fmt: skip


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    worker_timeout = WORKER_TIMEOUT.read(env)
    worker_expiry = WORKER_EXPIRY.read(env)
    if worker_expiry < worker_timeout:
        raise ConfigError("METRICS_WORKER_EXPIRY must be >= METRICS_WORKER_TIMEOUT")
    return Settings(
        broker_url=BROKER_URL.read(env),
        pools=POOLS.read(env),
        extra_queues=EXTRA_QUEUES.read(env),
        host=HOST.read(env),
        port=PORT.read(env),
        poll_interval=POLL_INTERVAL.read(env),
        worker_timeout=worker_timeout,
        worker_expiry=worker_expiry,
        beat_task=BEAT_TASK.read(env),
        max_tracked_tasks=MAX_TRACKED_TASKS.read(env),
        transport_options=TRANSPORT_OPTIONS.read(env),
        log_level=LOG_LEVEL.read(env),
        database_url=DATABASE_URL.read(env),
        database_timeout=DATABASE_TIMEOUT.read(env),
    )
