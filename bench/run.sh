#!/usr/bin/env bash
# make bench: the six benchmarks (bench/bench.py), then bench/results/latest.json + SUMMARY.md.
# Slow and noisy by nature: never part of `make test` or CI.
#
#   1-3 (host): processes from services/app/.venv with the stack's settings, a private
#       redis-server on a free loopback port, a scratch Postgres database on 127.0.0.1
#       (tools/ensure-services.sh makes sure Postgres answers).
#   4-5 (stack): the Compose stack with the autoscaler (AUTOSCALE=1) as its own project
#       (celery-stack-bench: own env file and free ports, like make e2e), removed on exit.
#   6 (cost): on that stack, CPU per task of every container (whole stack, by service) for three
#       workloads, against a plain-Celery reference; a new worker replica's start to first task.
#
# Only the cost benchmark (about 7 minutes; its own project celery-stack-bench-cost; replaces
# only the cost section of SUMMARY.md and latest.json):
#   bench/run.sh cost      or      BENCH_ONLY=cost make bench
# BENCH_KEEP=1 leaves the stack running afterwards; BENCH_PROJECT names its Compose project
# (default celery-stack-bench[-cost]-run<PID>, one per run).
#
# Env: BENCH_TASKS (no-op tasks per throughput run, default 3000), BENCH_BURST (default 10000),
#      BENCH_TASK_SECONDS (sleep of each burst task, default 0.1), BENCH_MAX_REPLICAS (default 6),
#      BENCH_COST_TASKS (tasks per cost workload, default 2000), BENCH_ONLY (= the argument).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=tools/isolated-stack.sh
. tools/isolated-stack.sh
only=${1:-${BENCH_ONLY:-}}
case "$only" in
    "" | cost) ;;
    *) echo "usage: bench/run.sh [cost]   (or BENCH_ONLY=cost make bench)" >&2; exit 2 ;;
esac
isolated_start "bench${only:+-$only}" BENCH_KEEP
isolated_project BENCH_PROJECT "celery-stack-bench${only:+-$only}"
command -v uv >/dev/null || python3 -m pip install -q uv
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing wrk (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v wrk >/dev/null || { echo "bench: wrk is missing (Debian: apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "bench: redis-server is missing (Debian: apt-get install redis-server)" >&2; exit 1; }
tools/ensure-services.sh >/dev/null
(cd services/app && uv sync --locked -q)
py() { uv run -q --project services/app --locked --with matplotlib==3.9.4 --with py-spy==0.4.1 python bench/bench.py "$@"; }

if [ -z "$only" ]; then
    timed "host benchmarks (1-3)" py host
fi

# The autoscaler only for 4-5; the cost benchmark stops it anyway (its drains are measured at one replica).
[ -n "$only" ] || export AUTOSCALE=1
isolated_env_file
# The chart's defaults, except max replicas (one host) and a scale-down window short enough
# for the footprint step to find the stack back at one replica.
cat >> "$ENV_FILE" <<EOT
AUTOSCALE_MAX_REPLICAS=${BENCH_MAX_REPLICAS:-6}
AUTOSCALE_SCALE_DOWN_STABILIZATION_WINDOW=60
AUTOSCALE_SCALE_DOWN_PERCENT=100
EOT
ensure_engine
# The engine socket tools/compose.sh uses, for the engine API calls of benchmarks 4-6.
DOCKER_HOST=$(COMPOSE_SH_QUIET='' tools/compose.sh version 2>&1 >/dev/null | sed -n 's/.*(\(unix:[^)]*\)).*/\1/p')
export DOCKER_HOST
say "stack benchmarks (${only:-4-6}) on $DOCKER_HOST"
timed "make images" logged "$ISOLATED_WORK/images.log" timeout 1500 make --no-print-directory images
timed "make up" logged "$ISOLATED_WORK/up.log" timeout 420 make --no-print-directory up
[ -n "$only" ] || timed "stack benchmarks (4-5)" py stack
timed "cost benchmark (6)" py cost
py report
