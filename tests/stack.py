"""What the tests of a running Compose stack share (tests/e2e, tests/autoscale): its env file, the
published ports, the JSON API, tools/compose.sh, and polling.

The run.sh scripts start the stack (tools/isolated-stack.sh) and put this directory and the
repository root (for testsupport/) on PYTHONPATH.
Env: ENV_FILE (the stack's env file), COMPOSE_PROJECT_NAME.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import testsupport
from testsupport import read_env_file

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = str(ROOT / "tools" / "compose.sh")
ENV = read_env_file(os.environ["ENV_FILE"])
HOST = "127.0.0.1"
WEB = f"http://{HOST}:{ENV.get('WEB_PORT', '8000')}"
QUEUE_METRICS = f"http://{HOST}:{ENV.get('QUEUE_METRICS_PORT', '9809')}"


_TOKEN: list[str] = []


def api_token() -> str:
    """A bearer token for this stack's API, created once per test run with the management
    command, as an operator would (README: the first token)."""
    if not _TOKEN:
        out = compose(
            "exec", "-T", "web", "python", "manage.py", "api_token", "create",
            "--name", f"e2e-{os.getpid()}-{int(time.time())}",
            "--tasks", "add,mul,xsum,count_widgets,rename_widget,long_job,notify_partner",
            "--report",
        )  # fmt: skip
        _TOKEN.append(out.strip().splitlines()[-1])
    return _TOKEN[0]


def http(method: str, url: str, body=None, headers=None, timeout=30) -> tuple[int, bytes]:
    """A request; calls to the web's /api/tasks and /api/workflows carry the bearer token."""
    data = json.dumps(body).encode() if body is not None else None
    headers = dict(headers or {})
    if url.startswith((f"{WEB}/api/tasks", f"{WEB}/api/workflows")):
        headers.setdefault("Authorization", f"Bearer {api_token()}")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
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


# The stack's services may restart under a test: a refused or reset connection means "not yet".
wait_for = functools.partial(testsupport.wait_for, interval=0.5, retry_on=(OSError,))


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
