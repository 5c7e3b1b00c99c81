"""The transactional outbox (jobs/outbox.py) with the real broker, real workers, a real beat
and a real gunicorn: nothing promised is lost to a broker outage, nothing rolled back is sent,
and a row published twice runs once."""

import time

import pytest
import requests
from celery.result import AsyncResult
from django.db import DatabaseError, transaction

from jobs import outbox, tasks
from jobs.models import Outbox
from testsupport import free_port, wait_for

from .support import start_beat, start_web
from .test_dead_broker import broker_url_at

pytestmark = pytest.mark.usefixtures("workers", "live_db")


@pytest.fixture(scope="module")
def web_without_broker(process_env, log_dir):
    web = start_web(
        {**process_env, "CELERY_BROKER_URL": broker_url_at(free_port())},
        log_dir,
        name="web-outbox-no-broker",
    )
    yield web
    web.stop()


@pytest.fixture
def beat(process_env, log_dir):
    """The relay as deployed: beat runs drain-outbox every 10 s (a short lease, so the beats of
    tests/test_beat.py are not kept waiting after this one stops)."""
    process = start_beat("beat-outbox", {**process_env, "CELERY_BEAT_LEASE_SECONDS": "6"}, log_dir)
    yield process
    process.stop()


def test_signup_while_the_broker_is_down_answers_and_mails_once_via_the_relay(
    web_without_broker, beat, smtp
):
    """The web process cannot reach the broker; beat and the workers can (the broker is back).
    The signup answers as always, the user is committed, and the drain publishes the mail."""
    from django.contrib.auth.models import User

    address = "outbox-signup@example.com"
    response = requests.post(
        f"{web_without_broker.url}/api/signup",
        json={"username": "outbox-signup", "email": address, "password": "kept-Secret-4711"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert User.objects.filter(username="outbox-signup").exists()
    row = Outbox.objects.get(task="jobs.tasks.send_email", args__0=address)
    assert row.published_at is None  # the after-commit publish failed: the broker is down

    wait_for(lambda: smtp.delivered[address], 40, what="the welcome mail, relayed by beat")
    row.refresh_from_db()
    delay = (row.published_at - row.created_at).total_seconds()
    print(f"commit to publish by the relay: {delay:.1f} s")
    time.sleep(3)  # a second copy, if any, would arrive now
    assert len(smtp.delivered[address]) == 1


def test_a_send_in_a_rolled_back_transaction_is_never_published():
    with pytest.raises(RuntimeError), transaction.atomic():
        row = outbox.send(tasks.add, (1, 2))
        raise RuntimeError("the request failed after its send")
    assert not Outbox.objects.filter(pk=row.pk).exists()
    outbox.drain_outbox()
    time.sleep(2)
    assert AsyncResult(str(row.task_id)).state == "PENDING"


def test_a_relay_that_dies_between_publish_and_mark_still_mails_once(workers, smtp, monkeypatch):
    """The first publish reaches the broker but the row is not marked (the relay died, or its
    database write failed), so the drain publishes it again. The worker runs one copy."""
    address = "outbox-twice@example.com"

    def die(row, now):
        raise DatabaseError("the relay died before marking the row")

    monkeypatch.setattr(outbox, "mark_published", die)
    outbox.send(tasks.send_email, (address, "Once", "Sent once."))  # no transaction: published now
    monkeypatch.undo()
    rows = Outbox.objects.filter(args__0=address)
    assert rows.get().published_at is None
    wait_for(lambda: rows.get().claimed_by, 30, what="the first copy to start")
    assert outbox.publish(rows.get().pk)  # the drain's copy
    row = rows.get()

    wait_for(lambda: smtp.delivered[address], 30, what="the mail")
    wait_for(
        lambda: f"send_email[{row.task_id}] published twice" in workers["high"].log(),
        30,
        what="the second copy skipped",
    )
    assert len(smtp.delivered[address]) == 1


def test_options_are_relayed():
    row = outbox.send(tasks.add, (2, 3), queue="high", countdown=1)
    assert AsyncResult(str(row.task_id)).get(timeout=30) == 5


def test_bad_input_is_refused_before_anything_is_written():
    before = Outbox.objects.count()
    with pytest.raises(ValueError, match="must be JSON"):
        outbox.send(tasks.add, (object(), 1))
    with pytest.raises(ValueError, match=r"unsupported options \['eta'\]"):
        outbox.send(tasks.add, (1, 2), eta=3)
    with pytest.raises(ValueError, match=r"unknown task 'jobs\.tasks\.nope'"):
        outbox.send("jobs.tasks.nope")
    assert Outbox.objects.count() == before


def test_a_row_that_cannot_be_published_does_not_hold_up_the_others():
    """A task renamed after its row was written: logged and left pending (the age alert sees it)."""
    stranded = Outbox.objects.create(task="jobs.tasks.renamed_since", args=[1])
    good = Outbox.objects.create(task=tasks.add.name, args=[4, 5])
    outbox.drain_outbox()
    assert AsyncResult(str(good.task_id)).get(timeout=30) == 9
    stranded.refresh_from_db()
    assert stranded.published_at is None
    stranded.delete()
