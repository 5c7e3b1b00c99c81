#!/usr/bin/env bash
# make e2e: build the five images, `make up`, test the running stack, `make down`.
#
# Engine: whatever tools/compose.sh finds (Docker or a Podman API socket). When nothing answers
# (CI, this kind of VM), it sets up rootful Podman with tools/container-engine: apt packages,
# local stand-ins for the official base images (python:3.12-slim, postgres:16, redis:7), the
# API socket, the health ticker and Compose v2. Idempotent; fast on a reused machine.
#
# The stack runs as its own Compose project with its own env file and free ports, so it never
# touches a developer's .env or `make up` stack, and it is removed (volumes too) on any exit.
#
# Env: E2E_BROKERS (default "redis rabbitmq": the whole test once per broker; the RabbitMQ run
#      uses compose.rabbitmq.yaml), E2E_PROJECT (default celery-stack-e2e-run<PID>),
#      E2E_WARM=1 (also time a warm `make up`), E2E_KEEP=1 (leave the stack running to debug),
#      E2E_STOP_ENGINE=1 (stop the Podman API service if this run started it),
#      E2E_THIRD_POOL=0 (run the repository's pools as they are, without README's `reports`).
#
# Three pools: the stack runs from a scratch copy of this working tree to which README's
# "Adding a pool" was applied (its pools.yaml entry, then `make pools`), and
# tests/e2e/test_pools.py checks the new pool end to end.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tools/isolated-stack.sh
. tools/isolated-stack.sh
isolated_start e2e E2E_KEEP
isolated_project E2E_PROJECT celery-stack-e2e
brokers=${E2E_BROKERS:-redis rabbitmq}

on_failure() {
    say "FAILED (rc=$1): state and recent logs"
    tools/compose.sh ps -a
    tools/compose.sh logs --no-color --tail 40
}
on_exit() {
    # The engine stays up for the next run (and for anyone else using it on this machine).
    if [ "${E2E_KEEP:-0}" != 1 ] && [ "$STARTED_ENGINE" = 1 ] && [ "${E2E_STOP_ENGINE:-0}" = 1 ]; then
        tools/container-engine/engine.sh stop >/dev/null
    fi
}

# ---- 0. README "Adding a pool", applied to a scratch copy of the working tree -------------------
# (tools/isolated-stack.sh; make autoscale-e2e does the same.)
if [ "${E2E_THIRD_POOL:-1}" = 1 ]; then isolated_readme_pool; fi

# ---- 1. env file and container engine (tools/isolated-stack.sh) -------------------------------------
isolated_env_file
# The first broker's images here; each `make up` checks its own broker's (tools/ensure-engine.sh).
BROKER=${brokers%% *} timed "container engine" ensure_engine

# ---- 2. images, then per broker: up, test, down --------------------------------------------------
# make's own output goes to the log; the timings are what we report.
command -v uv >/dev/null || python3 -m pip install -q uv
timed "make images" timeout 1500 make --no-print-directory images
for broker in $brokers; do
    export BROKER=$broker  # tools/compose.sh adds compose.rabbitmq.yaml; the test reads it too
    timed "make up ($broker, new volumes)" timeout 420 make --no-print-directory up
    timed "pytest tests/e2e ($broker)" env PYTHONPATH=tests:. timeout 900 uv run -q --no-project \
        --with pytest==9.2.0 --with pytest-timeout==2.4.0 \
        pytest tests/e2e -v -p no:cacheprovider --timeout 300
    # Grafana cannot run here: a real Prometheus scrapes this stack under load, and every
    # dashboard panel query and every rule must work against it (monitoring/stack_check.py).
    timed "dashboards vs live Prometheus ($broker)" timeout 600 \
        make --no-print-directory monitoring-stack-check
    if [ "${E2E_WARM:-0}" = 1 ]; then
        timed "make down ($broker, keep data)" timeout 300 make --no-print-directory down
        timed "make up ($broker, warm)" timeout 420 make --no-print-directory up
    fi
    timed "make down ($broker)" timeout 300 make --no-print-directory down V=1
    left=$(tools/compose.sh ps -a -q | wc -l)
    [ "$left" = 0 ] || { say "make down left $left containers"; exit 1; }
done
say "PASS"
