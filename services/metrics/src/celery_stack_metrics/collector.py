"""Turns the poller's and the event state's snapshots into Prometheus metrics at scrape time."""

from __future__ import annotations

import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .config import Settings
from .database import DatabaseSnapshot
from .events import INTERNAL_ERROR_REASONS, EventState

# Publish-to-start wait: milliseconds for the `high` SLO up to an hour for `default`.
WAIT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600,
)


class BrokerSnapshot:
    """Latest poll result, written by the poll loop."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples = {}
        self.ok = False
        self.last_success: float | None = None
        self.last_duration = 0.0
        self.last_error: str | None = None
        self.failures = 0
        self.memory: tuple[int, int] | None = None  # Redis (used, maxmemory) bytes


class Collector:
    def __init__(
        self,
        settings: Settings,
        broker: BrokerSnapshot,
        events: EventState,
        receiver,
        database: DatabaseSnapshot | None = None,  # None: DATABASE_URL unset
    ):
        self.settings = settings
        self.broker = broker
        self.events = events
        self.receiver = receiver
        self.database = database

    def describe(self):
        return []

    def collect(self):
        s = self.settings
        with self.broker.lock:
            ok = self.broker.ok
            samples = dict(self.broker.samples) if ok else {}
            last_success = self.broker.last_success
            duration = self.broker.last_duration
            failures = self.broker.failures
            memory = self.broker.memory if ok else None

        depth = GaugeMetricFamily(
            "celery_queue_depth",
            "Ready messages in the queue, counting Redis priority sub-lists (amqp: message_count).",
            labels=["queue_name"],
        )
        age = GaugeMetricFamily(
            "celery_queue_oldest_message_age_seconds",
            "Seconds since the oldest ready message was published (headers.published_at); 0 when "
            "empty. Redis only.",
            labels=["queue_name"],
        )
        for queue, sample in samples.items():
            depth.add_metric([queue], sample.depth)
            if sample.oldest_age is not None:
                age.add_metric([queue], sample.oldest_age)
        yield depth
        yield age
        if memory is not None:
            yield GaugeMetricFamily(
                "celery_broker_redis_memory_used_bytes", "Redis used_memory (INFO memory).",
                value=memory[0],
            )
            yield GaugeMetricFamily(
                "celery_broker_redis_maxmemory_bytes",
                "Redis maxmemory; 0 when unset. With noeviction, writes fail at this size.",
                value=memory[1],
            )

        workers, beat_tick, tracked = self.events.snapshot(
            live_after=s.worker_timeout, expire_after=s.worker_expiry
        )
        heartbeat = GaugeMetricFamily(
            "celery_worker_last_heartbeat_timestamp_seconds",
            "Unix time the last worker-heartbeat event of the worker was received.",
            labels=["worker", "pool"],
        )
        for w, _live in workers:
            heartbeat.add_metric([w.nodename, w.pool], w.last_heartbeat)
        yield heartbeat
        if beat_tick is not None:
            yield GaugeMetricFamily(
                "celery_beat_last_tick_timestamp_seconds",
                f"Unix time the last task-sent event of {s.beat_task} was received.",
                value=beat_tick,
            )

        queued = GaugeMetricFamily(
            "celery_pool_queued_messages", "Ready messages in the queues the pool consumes.", labels=["pool"]
        )
        active = GaugeMetricFamily(
            "celery_pool_active_tasks",
            "Tasks executing in the pool's live workers (worker-heartbeat 'active').",
            labels=["pool"],
        )
        nworkers = GaugeMetricFamily("celery_pool_workers", "Live workers of the pool.", labels=["pool"])
        conc = GaugeMetricFamily(
            "celery_pool_concurrency", "Configured concurrency per worker replica.", labels=["pool"]
        )
        signal = GaugeMetricFamily(
            "celery_pool_scaling_signal",
            "(queued + active) / concurrency: worker replicas the backlog needs.",
            labels=["pool"],
        )
        info = GaugeMetricFamily(
            "celery_pool_queue_info", "1 for each queue a pool consumes.", labels=["pool", "queue_name"]
        )
        for pool in s.pools:
            live = [w for w, is_live in workers if is_live and w.pool == pool.name]
            n_active = sum(w.active for w in live)
            active.add_metric([pool.name], n_active)
            nworkers.add_metric([pool.name], len(live))
            conc.add_metric([pool.name], pool.concurrency)
            for q in pool.queues:
                info.add_metric([pool.name, q], 1)
            if ok:
                n_queued = sum(samples[q].depth for q in pool.queues if q in samples)
                queued.add_metric([pool.name], n_queued)
                signal.add_metric([pool.name], (n_queued + n_active) / pool.concurrency)
        yield from (queued, active, nworkers, conc, signal, info)

        # Every configured pool starts at 0 for each known reason, so the first error is an
        # increase() (a series born at 1 is not) and dashboards have a line before any error.
        counts = {(pool.name, reason): 0 for pool in s.pools for reason in INTERNAL_ERROR_REASONS}
        counts.update(self.events.internal_error_counts())
        internal = CounterMetricFamily(
            "celery_task_internal_errors",
            "task-internal-error events: a task's result could not be recorded (result_not_recorded: "
            "the database was unreachable, the task was requeued) or an error was raised outside "
            "the task body (internal); any other reason is counted as other.",
            labels=["pool", "reason"],
        )
        for (pool_name, reason), n in sorted(counts.items()):
            internal.add_metric([pool_name, reason], n)
        yield internal
        if self.database is not None:
            yield from self.collect_database()

        yield GaugeMetricFamily(
            "celery_stack_metrics_broker_up", "1 if the last broker poll succeeded.", value=1 if ok else 0
        )
        if self.receiver is not None:  # None on SQS, which has no events: no series, no false alert
            yield GaugeMetricFamily(
                "celery_stack_metrics_events_connected",
                "1 while the event receiver is connected.",
                value=1 if self.receiver.connected else 0,
            )
        if last_success is not None:
            yield GaugeMetricFamily(
                "celery_stack_metrics_last_poll_success_timestamp_seconds",
                "Unix time of the last successful broker poll.",
                value=last_success,
            )
        yield GaugeMetricFamily(
            "celery_stack_metrics_poll_duration_seconds", "Duration of the last broker poll.", value=duration
        )
        yield GaugeMetricFamily(
            "celery_stack_metrics_consecutive_poll_failures",
            "Broker polls failed in a row.",
            value=failures,
        )
        yield GaugeMetricFamily(
            "celery_stack_metrics_tracked_tasks",
            "Sent tasks awaiting their task-started event (bounded map).",
            value=tracked,
        )

    def collect_database(self):
        with self.database.lock:
            ok, sample = self.database.ok, self.database.sample
        yield GaugeMetricFamily(
            "celery_stack_metrics_database_up", "1 if the last database poll succeeded.", value=1 if ok else 0
        )
        if ok and sample.outbox is not None:
            pending, oldest_age = sample.outbox
            yield GaugeMetricFamily(
                "celery_outbox_pending_tasks",
                "Transactional-outbox rows not yet published to the broker (jobs_outbox).",
                value=pending,
            )
            yield GaugeMetricFamily(
                "celery_outbox_oldest_pending_age_seconds",
                "Seconds since the oldest unpublished outbox row was committed; 0 when none waits.",
                value=oldest_age,
            )
        if ok and sample.dead_letters is not None:
            dead = GaugeMetricFamily(
                "celery_dead_letters", "Dead letters stored, per reason (deadletter_deadletter).", labels=["reason"]
            )
            for reason, n in sorted(sample.dead_letters.items()):
                dead.add_metric([reason], n)
            yield dead


def now() -> float:
    return time.time()
