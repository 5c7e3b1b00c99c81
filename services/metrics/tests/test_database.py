"""The optional database gauges: read from a real Postgres by the real companion, and never at the
cost of the broker gauges when the database is down or silent."""

import json
import os
import urllib.parse
import uuid

import psycopg
import pytest
from conftest import (
    REDIS_URL,
    Prometheus,
    as_grafana_sends,
    free_port,
    http_get,
    needs_prometheus,
    overview,
    pools_env,
    wait_for,
)

import testsupport

# The server only: each test gets a database of its own on it, dropped afterwards.
SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# The columns the companion reads, as the app's migrations create them (jobs.Outbox; the
# deadletter app's table).
TABLES = """
    CREATE TABLE jobs_outbox (
        id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, published_at timestamptz
    );
    CREATE TABLE deadletter_deadletter (
        id bigserial PRIMARY KEY, reason varchar(64) NOT NULL, created_at timestamptz NOT NULL
    );
"""


@pytest.fixture
def database_url():
    name = f"csm_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = urllib.parse.urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    yield url
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a hung database."""
    with testsupport.silent_port() as port:
        yield port


def test_outbox_and_dead_letter_gauges_from_postgres(redis_db, names, companion_factory, database_url):
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5,
        DATABASE_URL=database_url,
    )  # fmt: skip
    # No tables yet (an older app, no dead-letter app): up, and no series for them.
    wait_for(lambda: c.value("celery_stack_metrics_database_up") == 1, 20, what="database polled")
    assert c.value("celery_outbox_pending_tasks") is None
    assert not any(name == "celery_dead_letters" for name, _ in c.scrape())

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
        wait_for(lambda: c.value("celery_outbox_oldest_pending_age_seconds") == 0, 20, what="empty outbox")
        conn.execute(
            "INSERT INTO jobs_outbox (created_at, published_at) VALUES"
            " (now() - interval '120 seconds', NULL), (now(), NULL), (now(), NULL),"
            " (now() - interval '1 hour', now())"  # published: neither pending nor the oldest
        )
        conn.execute(
            "INSERT INTO deadletter_deadletter (reason, created_at) VALUES"
            " ('max_retries', now()), ('max_retries', now()), ('rejected', now())"
        )
        wait_for(lambda: c.value("celery_outbox_pending_tasks") == 3, 20, what="3 pending")
        assert 120 <= c.value("celery_outbox_oldest_pending_age_seconds") < 180
        wait_for(lambda: c.value("celery_dead_letters", reason="max_retries") == 2, 20, what="dead letters")
        assert c.value("celery_dead_letters", reason="rejected") == 1

        conn.execute("UPDATE jobs_outbox SET published_at = now()")
        wait_for(lambda: c.value("celery_outbox_pending_tasks") == 0, 20, what="all published")
        assert c.value("celery_outbox_oldest_pending_age_seconds") == 0


@pytest.mark.parametrize("dead", ["refused", "silent"])
def test_a_dead_database_leaves_the_broker_gauges_alone(redis_db, names, companion_factory, silent_port, dead):
    port = free_port() if dead == "refused" else silent_port
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/nothing", METRICS_DATABASE_TIMEOUT=1,
    )  # fmt: skip
    wait_for(lambda: c.value("celery_stack_metrics_broker_up") == 1, 20, what="broker polled")
    wait_for(lambda: any(r["message"] == "database poll failed; retrying" for r in c.logs()), 20, what="failure")
    assert c.value("celery_stack_metrics_database_up") == 0
    assert c.value("celery_queue_depth", queue_name=names["high_queue"]) == 0
    assert c.value("celery_outbox_pending_tasks") is None  # no stale value
    assert c.healthz()[0] == 200  # the broker side is fine: not restarted for the database


def test_without_database_url_no_database_series(redis_db, names, companion_factory):
    c = companion_factory(CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5)
    wait_for(lambda: c.value("celery_stack_metrics_broker_up") == 1, 20, what="broker polled")
    assert c.value("celery_stack_metrics_database_up") is None


@needs_prometheus
def test_panels_and_rules_in_real_prometheus(redis_db, names, companion_factory, database_url, tmp_path):
    """The overview's outbox and dead-letter panels have data in a real Prometheus scraping the
    companion (0 for an empty outbox and store), and monitoring/'s rules evaluate without error."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    c = companion_factory(
        CELERY_BROKER_URL=REDIS_URL, METRICS_POOLS=pools_env(names), METRICS_POLL_INTERVAL=0.5,
        DATABASE_URL=database_url,
    )  # fmt: skip
    dashboard = overview()
    row = next(i for i, p in enumerate(dashboard["panels"]) if p["title"] == "Outbox and dead letters")
    queries = [as_grafana_sends(dashboard, t["expr"]) for p in dashboard["panels"][row + 1 :] for t in p["targets"]]
    dead_letters = next(q for q in queries if "celery_dead_letters" in q)
    prom = Prometheus(c.url, tmp_path, "database-gauges-test")

    def values(expr):
        return {s["metric"].get("reason"): float(s["value"][1]) for s in prom.query(expr)}

    try:
        for query in queries:
            wait_for(lambda q=query: values(q) == {None: 0.0}, 30, what=f"{query} = 0")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO deadletter_deadletter (reason, created_at) VALUES ('max_retries', now())")
        wait_for(lambda: values(dead_letters) == {"max_retries": 1.0}, 30, what="a dead letter on the panel")
        wait_for(lambda: values("reason:celery_dead_letters:sum") == {"max_retries": 1.0}, 30, what="recorded")

        def health():
            groups = json.loads(http_get(prom.url + "/api/v1/rules")[1])["data"]["groups"]
            return {r["name"]: r.get("health") for g in groups for r in g["rules"]}

        wait_for(lambda: "unknown" not in health().values(), 30, what="every rule evaluated")
        assert {name: h for name, h in health().items() if h != "ok"} == {}
    finally:
        prom.stop()
