#!/usr/bin/env bash
# make chaos: the faults production brings (database, broker and worker crashes, stops, freezes,
# a network cut, Redis at its memory limit), each under load, and what must be kept when it fails
# (a task that kills its process, poison messages, signups with the broker down, the outbox relay
# killed mid-publish, two beats), against the real Compose stack, once per broker. Prints and writes the table fault | broker | sent | succeeded | failed | lost |
# duplicated | recover s | api max latency s (build/chaos/results.md); fails unless every fault
# ends with 0 lost, 0 duplicated, 0 failed, every worker consuming and the API never hanging.
#
# Same approach as tests/e2e/run.sh (tools/isolated-stack.sh): its own Compose project, env file,
# free ports and image tag, so it never touches your .env or `make up` stack; the engine
# tools/compose.sh finds, or the Podman kit; everything removed on exit (CHAOS_KEEP=1 keeps it).
# It signals containers through the engine CLI (podman, else docker) on this host, as root.
#
# Env: CHAOS_BROKERS (default "redis rabbitmq"), CHAOS_PROJECT (default celery-stack-chaos-run<PID>),
#      CHAOS_FAULTS (comma list, default all), CHAOS_PARTITION_RUNS (default 2), and the knobs
#      documented in tests/chaos/test_chaos.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# shellcheck source=tools/isolated-stack.sh
. tools/isolated-stack.sh
isolated_start chaos CHAOS_KEEP
isolated_project CHAOS_PROJECT celery-stack-chaos
brokers=${CHAOS_BROKERS:-redis rabbitmq}
out=$root/build/chaos
mkdir -p "$out"
rm -f "$out"/results-*.jsonl "$out/results.md"

on_failure() {
    tools/compose.sh ps -a >"$out/ps-on-failure.txt" 2>&1
    tools/compose.sh logs --no-color --timestamps >"$out/logs-on-failure.txt" 2>&1
    say "FAILED (rc=$1): container states and logs in $out/"
}
on_exit() {
    if ls "$out"/results-*.jsonl >/dev/null 2>&1; then
        python3 tests/chaos/report.py "$out"/results-*.jsonl >"$out/results.md"
        echo >&2
        cat "$out/results.md" >&2
        say "table: $out/results.md"
    fi
}

# ---- env file: free ports, own image tag; short knobs so the redelivery windows fit a CI run ----
# The image tag follows the project, so two chaos runs side by side never rebuild each other's images.
isolated_env_file
# The longest countdown the API accepts counts in every visibility window (config/checks.py);
# the suite uses countdowns of at most 15 s, so a short cap keeps the pools' windows short.
sed -i 's/^API_MAX_COUNTDOWN=.*/API_MAX_COUNTDOWN=30/' "$ENV_FILE"
grep -q '^API_MAX_COUNTDOWN=' "$ENV_FILE" || echo "API_MAX_COUNTDOWN=30" >>"$ENV_FILE"
# The suite measures faults, not the API's rate limits: its probes and bursts share one token,
# and the signup fault signs up more than 10 users from one address.
for var in RATELIMIT_ENQUEUE RATELIMIT_ENQUEUE_PER_IP RATELIMIT_SIGNUP_PER_IP; do
    sed -i "/^${var}=/d" "$ENV_FILE"
    echo "${var}=100000/m" >>"$ENV_FILE"
done
# The first broker's images here; each `make up` checks its own broker's (tools/ensure-engine.sh).
BROKER=${brokers%% *} timed "container engine" ensure_engine
command -v uv >/dev/null || python3 -m pip install -q uv

timed "make images" logged "$ISOLATED_WORK/images.log" timeout 1500 make --no-print-directory images
rc=0
for broker in $brokers; do
    export BROKER=$broker
    timed "make up ($broker)" logged "$ISOLATED_WORK/up-$broker.log" timeout 420 make --no-print-directory up
    # A passing run takes about 15 minutes per broker; a failing one waits out each deadline.
    timed "chaos faults ($broker)" env PYTHONPATH=tests:. CHAOS_RESULTS="$out/results-$broker.jsonl" \
        timeout 1800 uv run -q --no-project --with pytest==9.2.0 --with pytest-timeout==2.4.0 \
        pytest tests/chaos -v -p no:cacheprovider --timeout 900 --durations=0 || rc=1
    if [ "$rc" != 0 ]; then
        # Saved before make down removes the containers; the errors are printed too, since CI
        # shows only what is printed.
        tools/compose.sh ps -a >"$out/ps-$broker.txt" 2>&1
        tools/compose.sh logs --no-color --timestamps >"$out/logs-$broker.txt" 2>&1
        say "FAILED on $broker: logs in $out/logs-$broker.txt; their errors:"
        grep -E '"level": "(ERROR|CRITICAL)"|Traceback|Unrecoverable' "$out/logs-$broker.txt" |
            cut -c1-400 | tail -60 >&2 || true
        if [ "${CHAOS_KEEP:-0}" = 1 ]; then break; fi
    fi
    timed "make down ($broker)" logged "$ISOLATED_WORK/down-$broker.log" timeout 300 make --no-print-directory down V=1
done
[ "$rc" = 0 ] || exit "$rc"
say "PASS"
