"""manage.py run_task (make run-task): one task in the foreground, its result or a clear error.

This is the debugging command's own test: it runs the task in the calling process by design,
with no broker, so it says nothing about how a worker runs tasks (the other suites do).
"""

import os
import subprocess
import sys

import pytest

from .support import APP_DIR
from .testenv import ENV


def run_task(*argv):
    return subprocess.run(
        [sys.executable, "manage.py", "run_task", *argv],
        cwd=APP_DIR,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prints_the_result_as_json():
    result = run_task("add", "--args", "[2, 3]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "no task 'nope'; the app's tasks: add,"),
        (["add", "--args", "{"], "--args must be JSON"),
        (["add", "--args", '{"x": 1}'], "--args must be a JSON list"),
        (["add", "--args", "[1]"], "jobs.tasks.add failed: TypeError"),
    ],
)
def test_bad_input_is_named(argv, message):
    result = run_task(*argv)
    assert result.returncode != 0
    assert message in result.stderr
