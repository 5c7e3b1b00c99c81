"""make dev: the code in the checkout is the code that runs.

run.sh started `make dev` in a scratch copy; these tests edit that copy's source. The worker
must run an edited task without anyone restarting it (watchfiles restarts the process inside
the same container), and the web runs with DEBUG on.
"""

from __future__ import annotations

from stack import ROOT, WEB, compose, enqueue, http, wait_for, wait_success

TASKS = ROOT / "services" / "app" / "jobs" / "tasks.py"
ORIGINAL = "def add(x: float, y: float) -> float:\n    return x + y\n"
EDITED = "def add(x: float, y: float) -> float:\n    return x + y + 1000\n"


def add_result() -> float:
    # Beyond high's visibility window (75 s): a message the old process took and could not hand
    # back in time comes back to the new one.
    return wait_success(enqueue("add", [2, 3]), timeout=100)["result"]


def test_an_edited_task_runs_its_new_code_without_a_restart_by_hand():
    assert add_result() == 5
    container = compose("ps", "-q", "worker-high").split()
    source = TASKS.read_text()
    assert ORIGINAL in source, "jobs/tasks.py changed: update this test's ORIGINAL"
    TASKS.write_text(source.replace(ORIGINAL, EDITED))
    try:
        # Tasks sent while the worker restarts wait in the queue for the new process.
        wait_for(lambda: add_result() == 1005, 200, "the worker to run the edited add")
    finally:
        TASKS.write_text(source)
    # The same container: the process inside it was replaced, not the container.
    assert compose("ps", "-q", "worker-high").split() == container
    wait_for(lambda: add_result() == 5, 200, "the worker to run add as it was again")


def test_web_runs_with_debug_on():
    status, body = http("GET", f"{WEB}/no-such-page")
    assert status == 404
    # Django's technical 404 page, shown only with DEBUG on.
    assert b"URLconf" in body, body[:300]

