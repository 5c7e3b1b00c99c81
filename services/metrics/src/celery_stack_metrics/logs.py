"""JSON log lines on stdout."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kombu/celery are chatty about reconnects; our own lines say what matters.
    for noisy in ("kombu", "celery", "amqp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def poll_failed(log: logging.Logger, what: str, error: str, failures: int, interval: float) -> float:
    """Log a failed poll; return how long to wait: doubling from the interval, at most 60 s, so
    a dead dependency is neither hammered nor forgotten."""
    backoff = min(max(interval, 1.0) * 2 ** min(failures - 1, 5), 60.0)
    log.error(
        f"{what} poll failed; retrying",
        extra={"error": error, "failures": failures, "retry_in_seconds": backoff},
    )
    return backoff
