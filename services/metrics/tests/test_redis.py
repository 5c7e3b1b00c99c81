"""Against real Redis db 2, real workers/beat, the companion scraped over HTTP."""

import signal
import time

from conftest import (
    REDIS_URL,
    Prometheus,
    as_grafana_sends,
    http_get,
    needs_prometheus,
    overview,
    pools_env,
    send_internal_errors,
    wait_for,
)
from kombu import Connection, Exchange, Producer, Queue

SEP = "\x06\x16"


def test_priority_sublists_are_counted(redis_db, names, companion_factory, publisher):
    q = names["high_queue"]
    app = publisher(REDIS_URL)
    for _ in range(3):
        app.send_task("tests.sleep", args=[0], queue=q)
    for _ in range(2):
        app.send_task("tests.sleep", args=[0], queue=q, priority=5)
    app.send_task("tests.sleep", args=[0], queue=q, priority=9)

    # What a plain LLEN (celery-exporter's celery_queue_length) sees vs. what is really waiting.
    assert redis_db.llen(q) == 3
    assert redis_db.llen(f"{q}{SEP}3") == 2
    assert redis_db.llen(f"{q}{SEP}9") == 1

    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names, hconc=4), METRICS_POLL_INTERVAL=0.5
    )
    wait_for(lambda: c.value("celery_queue_depth", queue_name=q) == 6, what="depth 6")
    pool = names["high_pool"]
    assert c.value("celery_pool_queued_messages", pool=pool) == 6
    assert c.value("celery_pool_active_tasks", pool=pool) == 0
    assert c.value("celery_pool_workers", pool=pool) == 0
    assert c.value("celery_pool_concurrency", pool=pool) == 4
    assert c.value("celery_pool_scaling_signal", pool=pool) == 6 / 4
    assert c.value("celery_queue_depth", queue_name=names["default_queue"]) == 0
    assert c.value("celery_pool_scaling_signal", pool=names["default_pool"]) == 0
    assert c.value("celery_pool_queue_info", pool=pool, queue_name=q) == 1


def test_redis_memory_and_maxmemory(redis_db, names, companion_factory):
    """The gauges the RedisMemoryNearMaxmemory alert divides: INFO memory's used_memory and
    the configured maxmemory (0 when unset)."""
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5
    )
    wait_for(lambda: c.value("celery_broker_redis_memory_used_bytes"), what="used memory")
    assert c.value("celery_broker_redis_memory_used_bytes") > 100_000
    maxmemory = int(redis_db.config_get("maxmemory")["maxmemory"])
    assert c.value("celery_broker_redis_maxmemory_bytes") == maxmemory


def test_custom_priority_steps_and_separator(redis_db, names, companion_factory, publisher):
    q = names["default_queue"]
    opts = {"sep": ":", "priority_steps": [0, 5]}
    app = publisher(REDIS_URL, transport_options=opts)
    app.send_task("tests.sleep", args=[0], queue=q, priority=7)
    app.send_task("tests.sleep", args=[0], queue=q)
    assert redis_db.llen(f"{q}:5") == 1
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL,
        METRICS_POOLS=pools_env(names),
        METRICS_BROKER_TRANSPORT_OPTIONS='{"sep": ":", "priority_steps": [0, 5]}',
        METRICS_POLL_INTERVAL=0.5,
    )
    wait_for(lambda: c.value("celery_queue_depth", queue_name=q) == 2, what="depth 2")


def test_oldest_message_age_across_sublists(redis_db, names, companion_factory, publisher):
    q = names["high_queue"]
    app = publisher(REDIS_URL)
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.value("celery_queue_oldest_message_age_seconds", queue_name=q) == 0, what="empty = 0")

    app.send_task("tests.sleep", args=[0], queue=q, priority=9)  # oldest, in a priority sub-list
    time.sleep(2.5)
    app.send_task("tests.sleep", args=[0], queue=q)  # newer, in the base list
    age = wait_for(
        lambda: (a := c.value("celery_queue_oldest_message_age_seconds", queue_name=q)) and a >= 2.5 and a,
        what="age >= 2.5",
    )
    assert age < 10
    # The age can come from a poll that ran before the second message landed: wait for the depth.
    wait_for(lambda: c.value("celery_queue_depth", queue_name=q) == 2, what="depth 2")


def test_message_without_published_at_has_no_age(redis_db, names, companion_factory):
    """A message from a publisher that does not add the header: depth counts it, age is not made up."""
    q = names["default_queue"]
    with Connection(REDIS_URL) as conn:
        Producer(conn).publish({"x": 1}, routing_key=q, declare=[Queue(q, Exchange(q), q)], serializer="json")
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.value("celery_queue_depth", queue_name=q) == 1, what="depth 1")
    assert c.value("celery_queue_oldest_message_age_seconds", queue_name=q) is None


def test_wait_histogram_and_pool_signal(redis_db, names, companion_factory, publisher, procs):
    dq, dpool = names["default_queue"], names["default_pool"]
    hq, hpool = names["high_queue"], names["high_pool"]
    app = publisher(REDIS_URL)
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names, dconc=2, hconc=4), METRICS_POLL_INTERVAL=0.5
    )
    wait_for(lambda: c.healthz()[0] == 200, what="healthy")

    # default: 5 slow tasks wait ~3 s before any worker exists.
    for _ in range(5):
        app.send_task("tests.sleep", args=[4], queue=dq)
    time.sleep(3)
    procs.worker(REDIS_URL, pool=dpool, queue=dq, concurrency=2)

    def busy():
        s = c.scrape()

        def v(n, **kw):
            return s.get((n, frozenset(kw.items())))

        return (
            v("celery_pool_active_tasks", pool=dpool) == 2
            and v("celery_pool_queued_messages", pool=dpool) == 3
            and s
        )

    s = wait_for(busy, 30, what="2 active + 3 queued")
    assert s[("celery_pool_workers", frozenset({"pool": dpool}.items()))] == 1
    assert s[("celery_pool_concurrency", frozenset({"pool": dpool}.items()))] == 2
    assert s[("celery_pool_scaling_signal", frozenset({"pool": dpool}.items()))] == (3 + 2) / 2

    lbl = frozenset({"queue_name": dq}.items())
    wait_for(lambda: c.scrape()[("celery_queue_wait_time_seconds_count", lbl)] >= 2, 30, what="2 started")
    s = c.scrape()
    n = s[("celery_queue_wait_time_seconds_count", lbl)]
    assert s[("celery_queue_wait_time_seconds_sum", lbl)] >= 3 * n
    le = frozenset({"queue_name": dq, "le": "2.5"}.items())
    assert s[("celery_queue_wait_time_seconds_bucket", le)] == 0  # every one waited >= 3 s

    # high: an idle worker picks tasks up within milliseconds to a second.
    procs.worker(REDIS_URL, pool=hpool, queue=hq, concurrency=4)
    wait_for(lambda: c.value("celery_pool_workers", pool=hpool) == 1, 30, what="high worker live")
    for _ in range(4):
        app.send_task("tests.sleep", args=[0], queue=hq)
    hl = frozenset({"queue_name": hq}.items())
    wait_for(lambda: c.scrape()[("celery_queue_wait_time_seconds_count", hl)] == 4, 30, what="4 high started")
    s = c.scrape()
    assert s[("celery_queue_wait_time_seconds_bucket", frozenset({"queue_name": hq, "le": "1.0"}.items()))] == 4

    # A countdown is not queue wait: measured from the ETA, not from the publish.
    app.send_task("tests.sleep", args=[0], queue=hq, countdown=3)
    wait_for(lambda: c.scrape()[("celery_queue_wait_time_seconds_count", hl)] == 5, 30, what="countdown task started")
    s = c.scrape()
    assert s[("celery_queue_wait_time_seconds_bucket", frozenset({"queue_name": hq, "le": "1.0"}.items()))] == 5

    # All default tasks drain; the signal falls back to 0.
    wait_for(lambda: c.value("celery_pool_scaling_signal", pool=dpool) == 0, 40, what="drained")
    assert c.value("celery_queue_wait_time_seconds_count", queue_name=dq) == 5


def test_worker_heartbeat_freshness(redis_db, names, companion_factory, procs):
    pool, q = names["high_pool"], names["high_queue"]
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5,
        METRICS_WORKER_TIMEOUT=6, METRICS_WORKER_EXPIRY=14,
    )
    w1 = procs.worker(REDIS_URL, pool=pool, queue=q)
    ts = wait_for(
        lambda: c.value("celery_worker_last_heartbeat_timestamp_seconds", worker=w1.nodename, pool=pool),
        30, what="first heartbeat",
    )
    assert abs(time.time() - ts) < 5
    assert c.value("celery_pool_workers", pool=pool) == 1
    # Heartbeats keep coming (every 2 s).
    wait_for(
        lambda: c.value("celery_worker_last_heartbeat_timestamp_seconds", worker=w1.nodename, pool=pool) > ts,
        10, what="a newer heartbeat",
    )

    # Warm shutdown sends worker-offline: the worker disappears at once.
    w1.send_signal(signal.SIGTERM)
    w1.wait(20)
    wait_for(
        lambda: c.value("celery_worker_last_heartbeat_timestamp_seconds", worker=w1.nodename, pool=pool) is None,
        10, what="offline worker dropped",
    )
    assert c.value("celery_pool_workers", pool=pool) == 0

    # A crash sends nothing: the timestamp goes stale, the worker stops counting, then is dropped.
    w2 = procs.worker(REDIS_URL, pool=pool, queue=q, impl="solo")  # one process: SIGKILL is a clean crash
    wait_for(lambda: c.value("celery_pool_workers", pool=pool) == 1, 30, what="second worker live")
    w2.send_signal(signal.SIGKILL)
    w2.wait(5)
    killed_at = time.time()
    wait_for(lambda: c.value("celery_pool_workers", pool=pool) == 0, 15, what="not live after timeout")
    stale = c.value("celery_worker_last_heartbeat_timestamp_seconds", worker=w2.nodename, pool=pool)
    assert stale is not None and stale <= killed_at
    wait_for(
        lambda: c.value("celery_worker_last_heartbeat_timestamp_seconds", worker=w2.nodename, pool=pool) is None,
        20, what="silent worker dropped after expiry",
    )


def test_beat_tick_from_real_beat(redis_db, names, companion_factory, procs):
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.healthz()[0] == 200, what="healthy")
    assert c.value("celery_beat_last_tick_timestamp_seconds") is None  # no made-up value before a tick
    procs.beat(REDIS_URL, queue=names["high_queue"])
    first = wait_for(lambda: c.value("celery_beat_last_tick_timestamp_seconds"), 30, what="beat tick")
    assert abs(time.time() - first) < 5
    wait_for(lambda: c.value("celery_beat_last_tick_timestamp_seconds") > first, 10, what="next tick")


def test_task_internal_errors_counted_per_pool_and_reason(redis_db, names, companion_factory, publisher):
    dpool, hpool = names["default_pool"], names["high_pool"]
    app = publisher(REDIS_URL)
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.healthz()[0] == 200, what="healthy")
    name = "celery_task_internal_errors_total"
    # Configured pools start at 0 for both known reasons: the first error is an increase().
    for pool in (dpool, hpool):
        for reason in ("result_not_recorded", "internal"):
            assert c.value(name, pool=pool, reason=reason) == 0
    assert c.value(name, pool=hpool, reason="other") is None

    # Redis events are pub/sub: the receiver may subscribe just after /healthz turns 200.
    # Send until one is counted (from a pool of its own), then count exactly.
    warm = names["default_pool"] + "w"
    wait_for(
        lambda: send_internal_errors(app, f"{warm}@test", ["internal"]) or c.value(name, pool=warm, reason="internal"),
        what="event receiver subscribed",
    )

    send_internal_errors(app, f"{hpool}@test", ["result_not_recorded", "result_not_recorded", "internal"])
    send_internal_errors(app, f"{hpool}@test", ["made_up_reason", None])
    send_internal_errors(app, f"{dpool}@other-host", ["result_not_recorded"])
    wait_for(lambda: c.value(name, pool=dpool, reason="result_not_recorded") == 1, what="default counted")
    s = c.scrape()

    def v(**labels):
        return s.get((name, frozenset(labels.items())))

    assert v(pool=hpool, reason="result_not_recorded") == 2
    assert v(pool=hpool, reason="internal") == 1
    assert v(pool=hpool, reason="other") == 2  # unknown and missing reasons: bounded labels
    assert v(pool=hpool, reason="made_up_reason") is None
    assert v(pool=dpool, reason="internal") == 0
    status, text = http_get(c.url + "/metrics")
    assert status == 200 and "# TYPE celery_task_internal_errors_total counter" in text


@needs_prometheus
def test_internal_errors_panel_and_alert_in_real_prometheus(redis_db, names, companion_factory, publisher, tmp_path):
    """monitoring/'s rules and the overview panel's query, in a real Prometheus scraping the companion:
    0 per configured pool while nothing happened (the panel has data, nothing fires), then the
    first result_not_recorded event of a pool fires CeleryTaskResultNotRecorded for that pool."""
    hpool = names["high_pool"]
    app = publisher(REDIS_URL)
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.healthz()[0] == 200, what="healthy")
    dashboard = overview()
    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Internal errors per pool and reason"))
    panel_query = as_grafana_sends(dashboard, panel["targets"][0]["expr"])

    prom = Prometheus(c.url, tmp_path, "internal-errors-test")

    def query(expr):
        return {(s["metric"].get("pool"), s["metric"].get("reason")): float(s["value"][1]) for s in prom.query(expr)}

    def firing(alert):
        return query(f'ALERTS{{alertname="{alert}", alertstate="firing", pool="{hpool}"}}')

    def mine(result):  # this test's pools only (the warm-up pool comes later)
        return {k: v for k, v in result.items() if k[0] in (names["default_pool"], hpool)}

    try:
        # Nothing happened: the panel shows 0 for each configured pool and reason, nothing fires.
        zeros = {(p, r): 0.0 for p in (names["default_pool"], hpool) for r in ("internal", "result_not_recorded")}
        wait_for(lambda: mine(query(panel_query)) == zeros, 30, what="panel: 0 per pool and reason")
        wait_for(lambda: mine(query("pool_reason:celery_task_internal_errors:increase5m")) == zeros, 30,
                   what="recording rule: 0 per pool and reason")
        assert firing("CeleryTaskResultNotRecorded") == {}

        warm = names["default_pool"] + "w"
        wait_for(
            lambda: send_internal_errors(app, f"{warm}@test", ["internal"]) or c.value(
                "celery_task_internal_errors_total", pool=warm, reason="internal"),
            what="event receiver subscribed",
        )
        send_internal_errors(app, f"{hpool}@test", ["result_not_recorded"])  # the pool's first one
        wait_for(lambda: firing("CeleryTaskResultNotRecorded"), 30, what="CeleryTaskResultNotRecorded firing")
        assert query(panel_query)[(hpool, "result_not_recorded")] > 0
        assert firing("CeleryTaskInternalError") == {}
    finally:
        prom.stop()
