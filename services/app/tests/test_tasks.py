"""Task behaviour on real workers: routing, retries, transactions, canvas, limits."""

import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import transaction

from jobs import tasks
from jobs.models import Widget
from testsupport import wait_for

pytestmark = pytest.mark.usefixtures("workers", "live_db")


def worker_of(result):
    from django_celery_results.models import TaskResult

    return TaskResult.objects.get(task_id=result.id).worker


def test_routing_each_queue_is_consumed_by_its_own_pool():
    high = tasks.add.delay(1, 2)
    default = tasks.xsum.delay([1, 2, 3])
    assert high.get(timeout=20) == 3
    assert default.get(timeout=20) == 6
    assert worker_of(high).startswith("high@")
    assert worker_of(default).startswith("default@")


def test_widget_tasks_change_the_database():
    widget = Widget.objects.create(name="before")
    assert tasks.rename_widget.delay(widget.pk, "after").get(timeout=20) == {
        "id": widget.pk,
        "name": "after",
    }
    widget.refresh_from_db()
    assert widget.name == "after"
    assert tasks.count_widgets.delay().get(timeout=20) == Widget.objects.count()
    missing = tasks.rename_widget.delay(10**9, "x")
    missing.get(timeout=20, propagate=False)
    assert missing.state == "FAILURE"


def test_transient_smtp_errors_are_retried_with_backoff(smtp):
    address = f"flaky-2-{uuid.uuid4().hex[:8]}@example.com"
    result = tasks.send_email.delay(address, "hi", "body")
    assert result.get(timeout=60) == 1
    assert smtp.attempts[address] == 3  # two 451s, then delivered
    assert len(smtp.delivered[address]) == 1


def test_retries_stop_at_the_cap(smtp):
    address = f"down-{uuid.uuid4().hex[:8]}@example.com"
    result = tasks.send_email.delay(address, "hi", "body")
    result.get(timeout=90, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TransientEmailError"
    assert smtp.attempts[address] == 4  # first try + EMAIL_TASK_MAX_RETRIES (3)
    assert not smtp.delivered[address]


def test_a_late_state_never_overwrites_a_finished_task(celery_app):
    """Celery publishes a retry before it stores the RETRY of the attempt that asked for it, so
    with a short countdown the retry can finish first. The backend must keep that result."""
    from django_celery_results.models import TaskResult

    backend = celery_app.backend
    finished, running = str(uuid.uuid4()), str(uuid.uuid4())
    backend.mark_as_failure(finished, tasks.TransientEmailError("gave up after the last retry"))
    backend.mark_as_retry(finished, tasks.TransientEmailError("the attempt before it"))
    assert TaskResult.objects.get(task_id=finished).status == "FAILURE"
    # Nor does any other state that is not final: STARTED of a redelivered copy, PROGRESS.
    backend.mark_as_started(finished)
    backend.store_result(finished, {"percent": 50}, "PROGRESS")
    assert TaskResult.objects.get(task_id=finished).status == "FAILURE"
    backend.mark_as_retry(running, tasks.TransientEmailError("will retry"))
    assert TaskResult.objects.get(task_id=running).status == "RETRY"


def test_a_retry_written_during_a_success_never_overwrites_it(celery_app, live_db):
    """The same race with the two writes overlapping: the RETRY's check must not pass while the
    SUCCESS is being written. Here the SUCCESS holds the row lock while the RETRY starts."""
    from django.db import connection
    from django_celery_results.models import TaskResult

    backend = celery_app.backend
    task_id = str(uuid.uuid4())
    backend.mark_as_started(task_id)

    def late_retry():
        try:
            backend.mark_as_retry(task_id, tasks.TransientEmailError("the attempt before it"))
        finally:
            connection.close()

    retry = threading.Thread(target=late_retry)
    with transaction.atomic():
        row = TaskResult.objects.select_for_update().get(task_id=task_id)
        retry.start()
        retry.join(timeout=1.5)
        assert retry.is_alive(), "the RETRY write must wait for the row a SUCCESS is writing"
        row.status = "SUCCESS"
        row.save()
    retry.join(timeout=30)
    assert not retry.is_alive()
    assert TaskResult.objects.get(task_id=task_id).status == "SUCCESS"


def test_permanent_smtp_errors_fail_without_retry(smtp):
    address = f"perm-{uuid.uuid4().hex[:8]}@example.com"
    result = tasks.send_email.delay(address, "hi", "body")
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert smtp.attempts[address] == 1


def test_delay_on_commit_sends_nothing_on_rollback(smtp):
    rolled_back = f"rollback-{uuid.uuid4().hex[:8]}@example.com"
    committed = f"commit-{uuid.uuid4().hex[:8]}@example.com"

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        tasks.send_email.delay_on_commit(rolled_back, "never", "never")
        raise Abort

    with transaction.atomic():
        tasks.send_email.delay_on_commit(committed, "later", "later")
        time.sleep(1.5)
        # Still inside the transaction: nothing may have been published yet.
        assert smtp.attempts[committed] == 0

    wait_for(lambda: smtp.delivered[committed], 20, what="mail sent after commit")
    time.sleep(1)  # the same queue and workers: the rolled-back one would be here by now
    assert smtp.attempts[rolled_back] == 0


def test_canvas_group_and_chord_results():
    workflow = tasks.report_workflow("canvas", [[1, 2, 3], [10]])
    result = workflow.apply_async().get(timeout=30)
    assert result["totals"] == [6, 10]
    assert result["grand_total"] == 16
    assert result["widget_count"] == Widget.objects.count()


def test_soft_time_limit_cleans_up_and_fails_with_a_reason():
    result = tasks.long_job.apply_async(
        kwargs={"seconds": 30, "steps": 30}, soft_time_limit=2, time_limit=10
    )
    result.get(timeout=20, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "JobTimedOut"
    assert "soft time limit" in str(result.result)
    assert not Path(f"/tmp/long_job-{result.id}.part").exists()


def test_rate_limit_spaces_calls():
    """PARTNER_RATE_LIMIT=60/m in the tests: the worker releases one call a second. Unlimited,
    four no-op calls on two processes finish within a fraction of a second. The span is what
    the limit guarantees; single gaps also carry pool scheduling delays."""
    results = [tasks.notify_partner.delay(n) for n in range(4)]
    times = sorted(r.get(timeout=30)["at"] for r in results)
    assert times[-1] - times[0] >= 0.8 * 3, times


def test_expired_task_is_revoked_not_run():
    result = tasks.add.apply_async((1, 1), countdown=2, expires=1)
    wait_for(lambda: result.state == "REVOKED", 20, what="expired task revoked")
    assert result.state == "REVOKED"


@pytest.mark.redis_only
def test_every_message_carries_published_at(celery_app):
    """The oldest waiting message gets an age from this header (monitoring reads it)."""
    import json

    from kombu import Queue

    probe = Queue(f"probe-{uuid.uuid4().hex[:8]}", routing_key="probe")
    before = time.time()
    with celery_app.connection_for_write() as conn:
        probe.bind(conn.default_channel).declare()
        celery_app.send_task("jobs.tasks.add", (1, 2), queue=probe, connection=conn)
        client = conn.default_channel.client
        message = json.loads(client.lindex(probe.name, -1))
        client.delete(probe.name)
    assert before <= message["headers"]["published_at"] <= time.time()
