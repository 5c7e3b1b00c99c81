#!/usr/bin/env bash
# make autoscale-e2e: the Compose stack with the autoscaler (AUTOSCALE=1), a burst into `high`
# and `default`, scale-out, drain, scale-in after the stabilisation window; no task lost, and a
# task running on a replica being scaled in completes. Then a backlog in the third pool, which
# README's "Adding a pool" added: it is scaled out and back in like the others. Then `make down`.
#
# Same approach as tests/e2e/run.sh (tools/isolated-stack.sh): its own Compose project, env file
# and free ports (it never touches your .env or stack), the engine tools/compose.sh finds or the
# Podman kit, everything removed on exit (AUTOSCALE_E2E_KEEP=1 keeps it). Short knobs so it
# takes minutes, not the production 300 s window: polling 5 s, scale-down window 30 s, max 3 replicas.
#
# Three pools: like make e2e, the stack runs from a scratch copy of this working tree to which
# README's "Adding a pool" was applied (its pools.yaml entry, then `make pools`;
# tools/isolated-stack.sh). AUTOSCALE_E2E_THIRD_POOL=0 runs the repository's pools as they are.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tools/isolated-stack.sh
. tools/isolated-stack.sh
isolated_start autoscale-e2e AUTOSCALE_E2E_KEEP
isolated_project AUTOSCALE_E2E_PROJECT celery-stack-autoscale-e2e
export AUTOSCALE=1

on_failure() {
    say "FAILED (rc=$1): state and recent logs"
    tools/compose.sh ps -a
    # shellcheck disable=SC2046  # one word per worker service
    tools/compose.sh logs --no-color --tail 30 autoscaler $(tools/compose.sh config --services | grep '^worker-')
}

# ---- README "Adding a pool", applied to a scratch copy of the working tree -------------------
export AUTOSCALE_E2E_THIRD_POOL=${AUTOSCALE_E2E_THIRD_POOL:-1}  # the test reads it too
if [ "$AUTOSCALE_E2E_THIRD_POOL" = 1 ]; then isolated_readme_pool; fi

# ---- env file (free ports, own image tag, short autoscaling knobs) and engine -------------------
isolated_env_file
cat >> "$ENV_FILE" <<EOF
AUTOSCALE_POLLING_INTERVAL=5
AUTOSCALE_MAX_REPLICAS=3
AUTOSCALE_SCALE_DOWN_STABILIZATION_WINDOW=30
AUTOSCALE_SCALE_DOWN_PERCENT=100
EOF
timed "container engine" ensure_engine
command -v uv >/dev/null || python3 -m pip install -q uv

timed "make images" logged "$ISOLATED_WORK/images.log" timeout 1500 make --no-print-directory images
timed "make up (AUTOSCALE=1)" logged "$ISOLATED_WORK/up.log" timeout 420 make --no-print-directory up
timed "pytest tests/autoscale" env PYTHONPATH=tests:. timeout 900 uv run -q --no-project \
    --with pytest==9.2.0 --with pytest-timeout==2.4.0 --with prometheus-client==0.21.1 \
    pytest tests/autoscale -v -p no:cacheprovider --timeout 600
timed "make down" logged "$ISOLATED_WORK/down.log" timeout 300 make --no-print-directory down V=1
left=$(tools/compose.sh ps -a -q | wc -l)
[ "$left" = 0 ] || { say "make down left $left containers (autoscaled replicas must go too)"; exit 1; }
say "PASS"
