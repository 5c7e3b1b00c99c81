#!/usr/bin/env bash
# make dev-e2e: `make dev` as a user runs it, on a scratch copy of this working tree, then
# tests/dev/test_dev.py edits a task's source in that copy and expects the worker to run the new
# code with nobody restarting anything.
#
# Same approach as tests/e2e/run.sh (tools/isolated-stack.sh): its own Compose project, env file,
# free ports and image tag (it never touches your .env, stack or images), the engine
# tools/compose.sh finds or the Podman kit, everything removed on exit.
# Env: DEV_E2E_PROJECT (default celery-stack-dev-e2e-run<PID>), DEV_E2E_KEEP=1 (leave the stack running).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tools/isolated-stack.sh
. tools/isolated-stack.sh
isolated_start dev-e2e DEV_E2E_KEEP
isolated_project DEV_E2E_PROJECT celery-stack-dev-e2e
export DEV=1

on_failure() {
    say "FAILED (rc=$1): state and recent logs"
    tools/compose.sh ps -a
    tools/compose.sh logs --no-color --timestamps --tail 150 worker-high
}

# The test edits the source the stack mounts: the copy's, never this working tree.
isolated_copy
isolated_env_file
command -v uv >/dev/null || python3 -m pip install -q uv
timed "make dev" logged "$ISOLATED_WORK/dev.log" timeout 1200 make --no-print-directory dev
timed "pytest tests/dev" env PYTHONPATH=tests:. timeout 600 uv run -q --no-project \
    --with pytest==9.2.0 --with pytest-timeout==2.4.0 pytest tests/dev -v -p no:cacheprovider --timeout 300
say "PASS"
