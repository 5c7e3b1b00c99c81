"""Amazon SQS: each pool's backlog from the queue attributes, against a real moto server."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
from conftest import pools_env, wait_for

from testsupport import free_port

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def sqs_server(tmp_path, monkeypatch):
    """moto in server mode, on a free port; yields its endpoint."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).status == 200, 30, what="moto up")
    yield endpoint
    proc.terminate()
    proc.wait(10)
    log.close()


def test_sqs_backlog_counts_waiting_and_unacknowledged(names, sqs_server, companion_factory):
    dq, hq, dpool = names["default_queue"], names["high_queue"], names["default_pool"]
    prefix = "metrics-test-"
    client = boto3.client("sqs", endpoint_url=sqs_server, region_name=REGION)
    urls = {q: client.create_queue(QueueName=f"{prefix}{q}")["QueueUrl"] for q in (dq, hq)}
    for i in range(3):
        client.send_message(QueueUrl=urls[dq], MessageBody=json.dumps({"n": i}))
    # A worker took one and has not acknowledged it yet: still backlog.
    assert len(client.receive_message(QueueUrl=urls[dq], MaxNumberOfMessages=1)["Messages"]) == 1

    options = {
        "region": REGION,
        "queue_name_prefix": prefix,
        "predefined_queues": {f"{prefix}{q}": {"url": url} for q, url in urls.items()},
    }
    c = companion_factory(
        CELERY_BROKER_URL=f"sqs://{sqs_server.split('//')[1]}",
        METRICS_BROKER_TRANSPORT_OPTIONS=json.dumps(options),
        METRICS_POOLS=pools_env(names),
        METRICS_POLL_INTERVAL=0.5,
        **AWS_ENV,
    )
    wait_for(lambda: c.healthz()[0] == 200, 20, what="healthy without events")
    wait_for(lambda: c.value("celery_queue_depth", queue_name=dq) == 3, 20, what="depth 2 waiting + 1 held")
    assert c.value("celery_queue_depth", queue_name=hq) == 0
    assert c.value("celery_pool_queued_messages", pool=dpool) == 3
    assert c.value("celery_pool_scaling_signal", pool=dpool) == 3 / 2
    assert c.value("celery_queue_oldest_message_age_seconds", queue_name=dq) is None
    # No event stream on SQS: no events_connected series, so its alert cannot fire falsely.
    assert c.value("celery_stack_metrics_events_connected") is None
    assert c.value("celery_stack_metrics_broker_up") == 1
