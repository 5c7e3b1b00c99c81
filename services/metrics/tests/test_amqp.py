"""RabbitMQ: passive queue_declare depth; no oldest age (not measurable without consuming)."""

import os

import pytest
from conftest import AMQP_URL, pools_env, send_internal_errors, wait_for
from kombu import Connection


@pytest.fixture
def amqp_queues(names):
    yield
    with Connection(AMQP_URL) as conn:
        ch = conn.channel()
        for q in (names["default_queue"], names["high_queue"]):
            try:
                ch.queue_delete(q)
            except Exception:  # noqa: BLE001
                ch = conn.channel()


def test_amqp_depth_workers_and_wait(names, amqp_queues, companion_factory, publisher, procs):
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"tests need a real RabbitMQ at {AMQP_URL}: {exc}")
    dq, dpool = names["default_queue"], names["default_pool"]
    app = publisher(AMQP_URL)
    c = companion_factory(CELERY_BROKER_URL=AMQP_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.healthz()[0] == 200, 20, what="healthy")
    # A queue nobody declared yet reads as empty.
    assert c.value("celery_queue_depth", queue_name=dq) == 0

    for _ in range(4):
        app.send_task("tests.sleep", args=[0], queue=dq)
    wait_for(lambda: c.value("celery_queue_depth", queue_name=dq) == 4, 20, what="amqp depth 4")
    assert c.value("celery_pool_queued_messages", pool=dpool) == 4
    assert c.value("celery_pool_scaling_signal", pool=dpool) == 4 / 2
    assert c.value("celery_queue_oldest_message_age_seconds", queue_name=dq) is None

    procs.worker(AMQP_URL, pool=dpool, queue=dq, concurrency=2)
    wait_for(lambda: c.value("celery_pool_workers", pool=dpool) == 1, 30, what="amqp worker live")
    wait_for(
        lambda: c.value("celery_queue_wait_time_seconds_count", queue_name=dq) == 4, 30,
        what="4 started",
    )
    wait_for(lambda: c.value("celery_queue_depth", queue_name=dq) == 0, 20, what="drained")
    assert os.environ.get("TEST_BROKER_URL") == AMQP_URL


def test_amqp_task_internal_errors(names, companion_factory, publisher):
    """task-internal-error events through RabbitMQ's event exchange reach the counter."""
    hpool = names["high_pool"]
    app = publisher(AMQP_URL)
    c = companion_factory(CELERY_BROKER_URL=AMQP_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.healthz()[0] == 200, 20, what="healthy")
    name = "celery_task_internal_errors_total"
    assert c.value(name, pool=hpool, reason="result_not_recorded") == 0
    # The receiver's queue may be bound just after /healthz turns 200: send until one counts.
    warm = names["default_pool"] + "w"
    wait_for(
        lambda: send_internal_errors(app, f"{warm}@test", ["internal"]) or c.value(name, pool=warm, reason="internal"),
        20, what="event receiver bound",
    )
    send_internal_errors(app, f"{hpool}@test", ["result_not_recorded"] * 3 + ["internal"])
    wait_for(lambda: c.value(name, pool=hpool, reason="internal") == 1, 20, what="internal counted")
    assert c.value(name, pool=hpool, reason="result_not_recorded") == 3
    assert c.value(name, pool=names["default_pool"], reason="result_not_recorded") == 0
