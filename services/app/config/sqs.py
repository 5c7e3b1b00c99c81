"""Amazon SQS as the broker (CELERY_BROKER_URL=sqs://): kombu's SQS transport, configured.

SQS_REGION        the queues' region (default: the AWS SDK's AWS_REGION / AWS_DEFAULT_REGION);
                  one of them must be set: kombu would silently pick us-east-1
SQS_QUEUE_PREFIX  prepended to every queue name (default celery-stack-): one prefix per stack
SQS_ACCOUNT_ID    the queues' AWS account: the pools' queues become kombu's predefined queues
                  (https://sqs.<region>.amazonaws.com/<account>/<prefix><queue>), so the app
                  never lists or creates a queue and needs only Send/Receive/Delete/
                  ChangeVisibility/GetQueueAttributes on them. Unset: kombu creates missing
                  queues itself (development).

Credentials come from the AWS SDK's default chain (environment, IRSA / pod identity, instance
role), never from the URL: a URL with a key is refused. A host in the URL (sqs://127.0.0.1:4566)
is an SQS-compatible server reached over plain HTTP (the tests' moto server, Compose).

What SQS does not do, and how the app copes (README: brokers):
- countdown/ETA: the message waits in SQS (DelaySeconds, at most 15 minutes), not unacked in a
  worker, so API_MAX_COUNTDOWN is at most 900 and the queue's visibility timeout covers only
  the hard time limit (a longer countdown, which the API refuses, would wait its remainder
  unacked in the worker, inside the visibility timeout);
- a message body is at most 256 KiB: RecordingTask.apply_async refuses a bigger task before
  publishing (the API answers 413);
- no task events and no remote control (they need fanout exchanges): events are off, and
  nothing in the app inspects or controls workers.
"""

import json
import math
import os
from urllib.parse import urlsplit

from .env import MissingSetting

MAX_DELAY_SECONDS = 15 * 60  # SQS's DelaySeconds cap
MAX_MESSAGE_BYTES = 256 * 1024  # SQS's message size cap
# Celery's headers (argsrepr and kwargsrepr are cut at 1 KiB each), properties and the kombu
# envelope, generously: the size check errs on the side of refusing.
ENVELOPE_ALLOWANCE = 6 * 1024


class MessageTooLarge(ValueError):
    """A task whose message SQS would refuse (over 256 KiB)."""


def is_sqs(url: str) -> bool:
    return urlsplit(url or "").scheme == "sqs"


def region() -> str:
    value = os.environ.get("SQS_REGION", "").strip()
    value = value or os.environ.get("AWS_REGION", "") or os.environ.get("AWS_DEFAULT_REGION", "")
    if not value.strip():
        raise MissingSetting(
            "CELERY_BROKER_URL is sqs:// but no region is set: set SQS_REGION (or AWS_REGION)."
        )
    return value.strip()


def queue_prefix() -> str:
    return os.environ.get("SQS_QUEUE_PREFIX", "celery-stack-").strip()


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise MissingSetting(
            "CELERY_BROKER_URL carries AWS credentials: use sqs:// and give them the AWS way "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, IRSA / pod identity, an instance role)."
        )


def queue_url(name: str, url: str, account: str, region_name: str, prefix: str) -> str:
    parts = urlsplit(url)
    endpoint = (
        f"http://{parts.netloc}" if parts.hostname else f"https://sqs.{region_name}.amazonaws.com"
    )
    return f"{endpoint}/{account}/{prefix}{name}"


def transport_options(
    url: str, queue_names: list[str], connect_timeout: float, read_timeout: float, prefix=None
) -> dict:
    """kombu's SQS transport options for these queues (config/settings.py)."""
    check_url(url)
    region_name = region()
    prefix = queue_prefix() if prefix is None else prefix
    options = {
        "region": region_name,
        "queue_name_prefix": prefix,
        # Long polling: an idle worker asks every 10 s instead of every second.
        "wait_time_seconds": 10,
        "polling_interval": 0,
        # boto3's own client (publish, ack, queue attributes): SQS answers in milliseconds, so
        # like RabbitMQ's confirm a reply gets 1 s, and with Celery's one publish retry a silent
        # endpoint costs the API about 2 s before its 503. (Receiving uses kombu's curl client,
        # whose long poll these do not bound.) A lost ack means a redelivery, which
        # RecordingTask does not run again once it has succeeded.
        "client-config": {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"total_max_attempts": 1},
        },
    }
    account = os.environ.get("SQS_ACCOUNT_ID", "").strip()
    if account:
        options["predefined_queues"] = {
            f"{prefix}{name}": {"url": queue_url(name, url, account, region_name, prefix)}
            for name in queue_names
        }
    return options


def delay_seconds(countdown=None, eta=None) -> int | None:
    """The SQS delay for a countdown or ETA, rounded up so that the worker receives the message
    when it is due (never early, when it would have to hold it unacked)."""
    import datetime

    if countdown is None and isinstance(eta, datetime.datetime):
        if eta.tzinfo is None:  # Celery reads a naive ETA as UTC (enable_utc)
            eta = eta.replace(tzinfo=datetime.UTC)
        countdown = (eta - datetime.datetime.now(tz=datetime.UTC)).total_seconds()
    if not isinstance(countdown, int | float) or countdown <= 0:
        return None
    return min(math.ceil(countdown), MAX_DELAY_SECONDS)


def check_message_size(args, kwargs) -> None:
    """Estimate the message SQS would get and refuse it above 256 KiB. The arguments are
    serialized as JSON, base64-encoded in kombu's envelope, and the envelope base64-encoded
    again for SQS: about 16/9 of the JSON, plus the headers."""
    payload = len(json.dumps([list(args or ()), dict(kwargs or {})], default=str))
    envelope = math.ceil(payload / 3) * 4 + ENVELOPE_ALLOWANCE
    size = math.ceil(envelope / 3) * 4
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"The task's message would be about {size // 1024} KiB; SQS takes at most "
            f"{MAX_MESSAGE_BYTES // 1024} KiB. Pass a reference (a row id, an object key) "
            f"instead of the data."
        )


def visibility_timeouts(app, queues: list[str], attempts: int = 5) -> dict[str, float]:
    """Each queue's VisibilityTimeout attribute, as SQS applies it (config/checks.py)."""
    import time

    for attempt in range(1, attempts + 1):
        try:
            with app.connection_for_read() as conn:
                channel = conn.default_channel
                timeouts = {}
                for name in queues:
                    client = channel.sqs(queue=channel.canonical_queue_name(name))
                    attributes = client.get_queue_attributes(
                        QueueUrl=channel._new_queue(name), AttributeNames=["VisibilityTimeout"]
                    )["Attributes"]
                    timeouts[name] = float(attributes["VisibilityTimeout"])
                return timeouts
        except Exception as exc:  # unreachable, denied, no such queue: say which, then retry
            if attempt == attempts:
                raise MissingSetting(
                    f"Refusing to start: could not read the visibility timeout of SQS queues "
                    f"{queues}: {exc}"
                ) from None
            time.sleep(2)
    return {}
