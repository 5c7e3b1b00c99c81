"""What the tests of a running Compose stack share (tests/e2e, tests/autoscale): its env file, the
published ports, the JSON API, tools/compose.sh, and polling.

The run.sh scripts start the stack (tools/isolated-stack.sh) and put this directory on PYTHONPATH.
Env: ENV_FILE (the stack's env file), COMPOSE_PROJECT_NAME.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = str(ROOT / "tools" / "compose.sh")


def read_env(path: str) -> dict[str, str]:
    values = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


ENV = read_env(os.environ["ENV_FILE"])
HOST = "127.0.0.1"
WEB = f"http://{HOST}:{ENV.get('WEB_PORT', '8000')}"
QUEUE_METRICS = f"http://{HOST}:{ENV.get('QUEUE_METRICS_PORT', '9809')}"


def http(method: str, url: str, body=None, headers=None, timeout=30) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def enqueue(name: str, args=(), kwargs=None) -> str:
    status, raw = http(
        "POST", f"{WEB}/api/tasks/{name}", {"args": list(args), "kwargs": kwargs or {}}
    )
    assert status == 202, (name, status, raw[:500])
    payload = json.loads(raw)
    assert payload["status_url"].endswith(payload["id"]), payload
    return payload["id"]


def task_status(task_id: str) -> dict:
    status, raw = http("GET", f"{WEB}/api/tasks/{task_id}")
    assert status == 200, (status, raw[:500])
    return json.loads(raw)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll predicate() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, urllib.error.URLError) as exc:  # a service restarting under us
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def wait_success(task_id: str, timeout: float = 90) -> dict:
    def done():
        payload = task_status(task_id)
        assert payload["state"] not in ("FAILURE", "REVOKED"), payload
        return payload if payload["state"] == "SUCCESS" else None

    return wait_for(done, timeout, f"task {task_id} to succeed")


def compose(*args: str, timeout: float = 180) -> str:
    env = {**os.environ, "COMPOSE_SH_QUIET": "1"}
    proc = subprocess.run(
        [COMPOSE, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert proc.returncode == 0, f"compose {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
