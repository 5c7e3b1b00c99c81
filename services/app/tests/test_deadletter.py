"""Capped redelivery and the dead-letter store (deadletter/), on the session's real workers and
broker: what no worker can run is kept, can be replayed, and the workers keep serving."""

import base64
import io
import json
import pickle
import uuid

import pytest
from celery import states
from django.core.management import call_command
from kombu import Connection

from config import pools
from deadletter.models import DeadLetter, DeliveryCount
from deadletter.tasks import collect_dead_lettered
from jobs import tasks
from testsupport import wait_for

from .testenv import BROKER, BROKERS

pytestmark = pytest.mark.usefixtures("live_db")


def entry_for(task_id):
    return DeadLetter.objects.filter(task_id=task_id).first()


def publish_raw(body, content_type, headers, queue="default"):
    from config.celery import app

    # The app's connection: on SQS its queue prefix and predefined queues come with it.
    with app.connection_for_write() as conn, conn.Producer() as producer:
        producer.publish(
            body,
            exchange=queue,
            routing_key=queue,
            declare=[app.amqp.queues[queue]],  # SQS: the binding lives in this process
            headers=headers,
            content_type=content_type,
            content_encoding="binary" if isinstance(body, bytes) else "utf-8",
        )


@pytest.mark.parametrize(
    ("task", "cap"),
    [
        (tasks.kill_own_process_for_tests, 3),  # CELERY_TASK_MAX_DELIVERIES' default
        (tasks.kill_own_process_capped_at_2_for_tests, 2),  # the task option max_deliveries
    ],
)
def test_task_that_kills_its_process_ends_failure_after_the_cap(workers, task, cap):
    """Its pool process dies on every run: run `cap` times, then FAILURE with the reason, a
    dead letter, and no count left behind. The workers live on."""
    lost_before = workers["default"].log().count("WorkerLostError")
    result = task.delay()
    wait_for(lambda: result.state in states.READY_STATES, 180, what="the capped task to end")
    assert result.state == states.FAILURE
    assert str(result.result) == f"worker lost {cap} times"
    wait_for(lambda: entry_for(result.id), 30, what="the dead letter")
    entry = entry_for(result.id)
    assert entry.reason == DeadLetter.Reason.REDELIVERY_CAP
    assert entry.task_name == task.name
    assert entry.queue == "default"
    assert json.loads(entry.body)[0] == []  # args, as published
    assert entry.error == f"DeliveryLimitReached: worker lost {cap} times"
    assert not DeliveryCount.objects.filter(task_id=result.id).exists()
    assert workers["default"].log().count("WorkerLostError") - lost_before >= cap
    assert tasks.add.delay(2, 3).get(timeout=30) == 5
    assert all(worker.alive() for worker in workers.values())


def test_poison_messages_are_kept_and_the_worker_keeps_serving(workers):
    """An unknown task, a body that is not JSON, a pickle: each is stored (bytes as base64),
    not dropped, and the worker goes on with the next message."""
    ids = {name: str(uuid.uuid4()) for name in ("unknown", "undecodable", "pickle")}
    common = {"lang": "py", "retries": 0, "argsrepr": "()", "kwargsrepr": "{}"}
    unknown = tasks.add.app.send_task("jobs.tasks.no_such_task", (1,), task_id=ids["unknown"])
    garbage = b"\xff\xfe not json"
    publish_raw(
        garbage, "application/json", {**common, "task": tasks.add.name, "id": ids["undecodable"]}
    )
    pickled = pickle.dumps(((1, 2), {}, {}))
    publish_raw(
        pickled,
        "application/x-python-serialize",
        {**common, "task": tasks.add.name, "id": ids["pickle"]},
    )
    wait_for(lambda: all(entry_for(i) for i in ids.values()), 60, what="three dead letters")

    entry = entry_for(ids["unknown"])
    assert entry.reason == DeadLetter.Reason.UNKNOWN_TASK
    assert entry.task_name == "jobs.tasks.no_such_task"
    assert json.loads(entry.body)[0] == [1]
    assert "no_such_task" in entry.error
    wait_for(lambda: unknown.state == states.FAILURE, 30, what="the unknown task's FAILURE")

    entry = entry_for(ids["undecodable"])
    assert entry.reason == DeadLetter.Reason.UNDECODABLE
    assert entry.body_is_base64 and base64.b64decode(entry.body) == garbage
    assert entry.content_type == "application/json"
    assert entry.queue == "default"

    entry = entry_for(ids["pickle"])
    assert entry.reason == DeadLetter.Reason.UNDECODABLE
    assert "ContentDisallowed" in entry.error
    assert base64.b64decode(entry.body) == pickled
    assert entry.content_type == "application/x-python-serialize"

    assert tasks.add.delay(4, 5).get(timeout=30) == 9
    assert all(worker.alive() for worker in workers.values())


def test_retries_exhausted_is_kept_and_a_replay_that_succeeds_removes_it(workers, smtp):
    """send_email fails 4 times with 451 (it retries 3 times in the tests): a dead letter.
    The mail server is better now: the replay sends the mail and the entry goes."""
    address = f"flaky-4-{uuid.uuid4().hex[:8]}@example.com"
    result = tasks.send_email.delay(address, "Hello", "Body")
    wait_for(lambda: entry_for(result.id), 60, what="the dead letter")
    entry = entry_for(result.id)
    assert entry.reason == DeadLetter.Reason.RETRIES_EXHAUSTED
    assert entry.headers["retries"] == 3
    assert "TransientEmailError" in entry.error
    assert result.state == states.FAILURE
    assert smtp.attempts[address] == 4 and not smtp.delivered[address]

    call_command("deadletter", "replay", str(entry.pk), stdout=io.StringIO())
    status = lambda: result.backend.get_task_meta(result.id, cache=False)["status"]  # noqa: E731
    wait_for(lambda: status() == states.SUCCESS, 60, what="the replayed task to succeed")
    assert len(smtp.delivered[address]) == 1
    wait_for(lambda: entry_for(result.id) is None, 30, what="the entry to be removed")


def test_the_command_lists_shows_and_purges(workers):
    from deadletter.store import record

    task_id = str(uuid.uuid4())
    fields = {"queue": "default", "task_name": "x.y", "task_id": task_id, "body": "[]"}
    entry = record(DeadLetter.Reason.UNKNOWN_TASK, fields, "NotRegistered: 'x.y'")
    out = io.StringIO()
    call_command("deadletter", "list", "--reason", "unknown_task", stdout=out)
    assert f"x.y[{task_id}]" in out.getvalue()
    out = io.StringIO()
    call_command("deadletter", "show", str(entry.pk), stdout=out)
    assert json.loads(out.getvalue())["task_id"] == task_id
    with pytest.raises(Exception, match="name entries by ID, or give --all"):
        call_command("deadletter", "purge")
    with pytest.raises(Exception, match="no dead letter with id 0"):
        call_command("deadletter", "replay", "0")
    call_command("deadletter", "purge", str(entry.pk), stdout=io.StringIO())
    assert entry_for(task_id) is None


@pytest.mark.skipif(BROKER != "amqp", reason="RabbitMQ's dead-lettering")
def test_messages_rabbitmq_dead_letters_land_in_the_store(workers):
    """A queue declared as the task queues are: a message that expires in it and one rejected
    without requeue go to the dead-letter exchange; the beat task moves both into the store."""
    queue = pools.declare(["dlx-test"])[0]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    with Connection(BROKERS[BROKER]) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            with conn.Producer() as producer:
                for task_id, expiration in zip(ids, (None, 0.01), strict=True):
                    producer.publish(
                        [[1, 2], {}, {}],
                        exchange=queue.exchange,
                        routing_key=queue.routing_key,
                        headers={"task": tasks.add.name, "id": task_id},
                        serializer="json",
                        expiration=expiration,
                    )
            rejected = wait_for(lambda: bound.get(no_ack=False), 10, what="the message")
            rejected.reject(requeue=False)
            moved = 0
            for _ in range(10):
                moved += collect_dead_lettered.delay().get(timeout=30)
                if all(entry_for(i) for i in ids):
                    break
        finally:
            bound.delete()
    assert moved >= 2
    entries = [entry_for(i) for i in ids]
    assert {e.reason for e in entries} == {DeadLetter.Reason.BROKER_DEAD_LETTERED}
    assert {e.queue for e in entries} == {"dlx-test"}
    assert sorted(e.error for e in entries) == ["RabbitMQ: expired", "RabbitMQ: rejected"]
    assert json.loads(entries[0].body) == [[1, 2], {}, {}]
