"""celery-stack-metrics: companion Prometheus exporter (queue depth incl. priority sub-lists,
oldest message age, queue wait time, per-pool scaling signal, heartbeat freshness, task internal
errors)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from celery import Celery
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics

from . import __version__
from .broker import BrokerPoller
from .cli import start
from .collector import WAIT_BUCKETS, BrokerSnapshot, Collector
from .config import OPTIONS, Settings, load
from .database import DatabasePoller, DatabaseSnapshot
from .database import poll_loop as database_poll_loop
from .envopts import describe
from .events import EventReceiverThread, EventState
from .logs import poll_failed

log = logging.getLogger("celery_stack_metrics")


def make_app(settings: Settings) -> Celery:
    app = Celery("celery-stack-metrics", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        accept_content=["json"],
        event_serializer="json",
        broker_transport_options=settings.transport_options,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=1,
    )
    return app


def poll_loop(settings: Settings, poller: BrokerPoller, snap: BrokerSnapshot, stop: threading.Event):
    while not stop.is_set():
        started = time.monotonic()
        try:
            samples = poller.poll()
        except Exception as exc:  # noqa: BLE001 - any broker failure: log, back off, retry
            with snap.lock:
                snap.ok = False
                snap.samples = {}
                snap.failures += 1
                snap.last_error = f"{type(exc).__name__}: {exc}"
                failures = snap.failures
            stop.wait(poll_failed(log, "broker", snap.last_error, failures, settings.poll_interval))
            continue
        with snap.lock:
            if not snap.ok:
                log.info("broker poll succeeded", extra={"queues": sorted(samples)})
            snap.ok = True
            snap.samples = samples
            snap.memory = poller.memory
            snap.failures = 0
            snap.last_error = None
            snap.last_success = time.time()
            snap.last_duration = time.monotonic() - started
        stop.wait(settings.poll_interval)


def main(argv=None) -> int:
    usage = f"{__doc__}\n{describe(OPTIONS)}"
    settings = start(sys.argv[1:] if argv is None else argv, usage, load, log)
    disable_created_metrics()  # no *_created series: they only add cardinality here
    app = make_app(settings)
    registry = CollectorRegistry()
    wait = Histogram(
        "celery_queue_wait_time_seconds",
        "Seconds from task-sent (or its ETA) to task-started, per queue.",
        ["queue_name"],
        buckets=WAIT_BUCKETS,
        registry=registry,
    )
    state = EventState(
        beat_task=settings.beat_task,
        max_tracked=settings.max_tracked_tasks,
        observe_wait=lambda queue, seconds: wait.labels(queue).observe(seconds),
    )
    for q in settings.queues:
        wait.labels(q)  # every configured queue shows up at 0 before its first task
    # SQS carries no task events (no fanout): the broker gauges only, and healthy without events.
    receiver = None if settings.broker_url.startswith("sqs://") else EventReceiverThread(app, state)
    snap = BrokerSnapshot()
    database = DatabaseSnapshot() if settings.database_url else None
    registry.register(Collector(settings, snap, state, receiver, database))

    def health():
        with snap.lock:
            detail = {
                "broker_poll_ok": snap.ok,
                "last_poll_error": snap.last_error,
                "events_connected": receiver.connected if receiver else None,
                "events_error": receiver.last_error if receiver else "no task events on SQS",
            }
        return snap.ok and (receiver is None or receiver.connected), detail

    from .server import make_server

    try:
        server = make_server(settings.host, settings.port, registry, health)
    except OSError as exc:
        log.critical(f"cannot listen on {settings.host}:{settings.port}: {exc}")
        return 1

    stop = threading.Event()
    poller = BrokerPoller(app, settings.queues)
    poll_thread = threading.Thread(
        target=poll_loop, args=(settings, poller, snap, stop), name="broker-poll", daemon=True
    )
    threads = [poll_thread]
    if database is not None:
        database_poller = DatabasePoller(settings.database_url, settings.database_timeout)
        threads.append(
            threading.Thread(
                target=database_poll_loop,
                args=(database_poller, database, settings.poll_interval, stop),
                name="database-poll",
                daemon=True,
            )
        )

    def shutdown(signum, _frame):
        log.info("shutting down", extra={"signal": signum})
        stop.set()
        if receiver:
            receiver.stop()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)

    log.info(
        "celery-stack-metrics starting",
        extra={
            "version": __version__,
            "listen": f"{settings.host}:{settings.port}",
            "broker": app.connection_for_read().as_uri(),  # as_uri() masks the password
            "pools": {p.name: {"queues": list(p.queues), "concurrency": p.concurrency} for p in settings.pools},
            "queues": list(settings.queues),
            "database_gauges": database is not None,
        },
    )
    for thread in threads:
        thread.start()
    if receiver:
        receiver.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        if receiver:
            receiver.stop()
        poller.close()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
