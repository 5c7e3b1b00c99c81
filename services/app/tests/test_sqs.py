"""What only SQS does (config/sqs.py), against the suite's moto server (TEST_BROKER=sqs): queue
visibility timeouts checked at startup, countdowns waiting in SQS, a worker lost with its task
redelivered after the visibility timeout, and the 256 KiB message cap."""

import secrets
import time

import pytest
import requests

from jobs import tasks
from testsupport import wait_for

from .support import BIN, create_sqs_queues, start_web, task_outlives_its_whole_worker
from .test_startup import DJANGO_CHECK, run
from .testenv import BROKER, BROKERS, ENV

pytestmark = [
    pytest.mark.skipif(BROKER != "sqs", reason="needs the SQS server (TEST_BROKER=sqs)"),
    pytest.mark.usefixtures("live_db"),
]


def scratch_queues(visibility_timeout: int) -> tuple[str, object]:
    """The pools' queues under a prefix of their own, so the session's workers never see them."""
    prefix = f"scratch-{secrets.token_hex(3)}-"
    client = create_sqs_queues(BROKERS["sqs"], prefix, ["default", "high"], visibility_timeout)
    return prefix, client


def attributes(client, prefix: str, queue: str) -> dict:
    url = client.get_queue_url(QueueName=f"{prefix}{queue}")["QueueUrl"]
    return client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def producer_for(prefix: str):
    """The app's connection, on the scratch queues."""
    from django.conf import settings

    from config import sqs
    from config.celery import app

    options = sqs.transport_options(
        BROKERS["sqs"],
        ["default", "high"],
        settings.BROKER_TIMEOUT,
        settings.BROKER_CONFIRM_TIMEOUT,
        prefix=prefix,
    )
    return app.connection_for_write(transport_options=options)


def test_a_queue_whose_visibility_timeout_is_below_the_hard_limit_refuses_the_worker():
    prefix, _ = scratch_queues(visibility_timeout=25)  # the suite's hard limit is 30 s
    result = run(
        [str(BIN / "worker")],
        {**ENV, "SQS_QUEUE_PREFIX": prefix, "CELERY_WORKER_QUEUES": "high"},
        timeout=120,
    )
    assert result.returncode != 0
    assert "SQS queue high has VisibilityTimeout=25s" in result.stderr
    assert "longest task time limit (30s" in result.stderr


def test_a_countdown_waits_in_sqs_not_in_a_worker():
    """DelaySeconds: nobody holds the message unacked while it waits, so a lost worker cannot
    take it along, and the visibility timeout needs to cover the run only."""
    prefix, client = scratch_queues(visibility_timeout=60)
    with producer_for(prefix) as conn, conn.Producer() as producer:
        tasks.add.apply_async((1, 2), countdown=4, producer=producer)
    waiting = attributes(client, prefix, "high")
    assert waiting["ApproximateNumberOfMessagesDelayed"] == "1"
    assert waiting["ApproximateNumberOfMessages"] == "0"
    time.sleep(5)
    due = attributes(client, prefix, "high")
    assert due["ApproximateNumberOfMessages"] == "1"
    assert due["ApproximateNumberOfMessagesDelayed"] == "0"


def test_whole_worker_sigkilled_task_comes_back_after_visibility_timeout(process_env, log_dir):
    """The worker and its pool die at once (node lost): SQS delivers the message again once
    the queue's visibility timeout has passed, and another worker runs it."""
    prefix, _ = scratch_queues(visibility_timeout=12)
    env = {
        **process_env,
        "SQS_QUEUE_PREFIX": prefix,
        "CELERY_TASK_SOFT_TIME_LIMIT": "8",
        "CELERY_TASK_TIME_LIMIT": "9",
        "API_MAX_COUNTDOWN": "2",
    }
    task_outlives_its_whole_worker("sqs-vt", env, log_dir, lambda: producer_for(prefix))


@pytest.fixture(scope="module")
def roomy_web(process_env, log_dir, workers):
    """A web that takes bodies bigger than SQS's message cap (API_MAX_BODY_BYTES)."""
    web = start_web({**process_env, "API_MAX_BODY_BYTES": str(1024 * 1024)}, log_dir, "web-roomy")
    yield web
    web.stop()


def test_a_task_over_the_message_cap_gets_413_before_publishing(roomy_web, api):
    numbers = [0.1234567890123456 + i for i in range(10_000)]  # about 190 KB of JSON
    response = api.post(f"{roomy_web.url}/api/tasks/xsum", json={"args": [numbers]}, timeout=30)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "message_too_large"
    assert "SQS takes at most 256 KiB" in error["message"]
    # Half as much fits, and runs.
    half = numbers[:5_000]
    response = api.post(f"{roomy_web.url}/api/tasks/xsum", json={"args": [half]}, timeout=30)
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]

    def done():
        status = api.get(f"{roomy_web.url}/api/tasks/{task_id}", timeout=10).json()
        return status if status["state"] == "SUCCESS" else None

    assert wait_for(done, 30, what="xsum done")["result"] == pytest.approx(sum(half))


def test_credentials_in_the_url_and_a_long_countdown_refuse_to_start():
    with_key = run(DJANGO_CHECK, {**ENV, "CELERY_BROKER_URL": "sqs://AKIAEXAMPLE:secret@"})
    assert with_key.returncode != 0
    assert "CELERY_BROKER_URL carries AWS credentials" in with_key.stderr
    countdown = run(DJANGO_CHECK, {**ENV, "API_MAX_COUNTDOWN": "1000"})
    assert countdown.returncode != 0
    assert "SQS delays a message by at most 900s" in countdown.stderr
    no_region = run(
        DJANGO_CHECK, {**ENV, "SQS_REGION": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": ""}
    )
    assert no_region.returncode != 0
    assert "no region is set" in no_region.stderr


def test_readyz_answers_on_sqs(web):
    assert requests.get(f"{web.url}/readyz", timeout=10).json()["broker"] == "ok"
