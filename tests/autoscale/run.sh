#!/usr/bin/env bash
# make autoscale-e2e: the Compose stack with the autoscaler (AUTOSCALE=1), a burst into `high`
# and `default`, scale-out, drain, scale-in after the stabilisation window; no task lost, and a
# task running on a replica being scaled in completes. Then `make down`.
#
# Same approach as tests/e2e/run.sh: its own Compose project, env file and free ports (it never
# touches your .env or stack), the engine tools/compose.sh finds or the Podman kit, everything
# removed on exit (AUTOSCALE_E2E_KEEP=1 keeps it). Short knobs so it takes minutes, not the
# production 300 s window: polling 5 s, scale-down window 30 s, max 3 replicas.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
kit=$root/tools/container-engine
t0=$(date +%s)
say() { echo "[autoscale-e2e +$(( $(date +%s) - t0 ))s] $*" >&2; }

work=$(mktemp -d /tmp/celery-stack-autoscale.XXXXXX)
export ENV_FILE=$work/autoscale.env
export COMPOSE_PROJECT_NAME=${AUTOSCALE_E2E_PROJECT:-celery-stack-autoscale-e2e}
export COMPOSE_SH_QUIET=1 AUTOSCALE=1

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -f "$ENV_FILE" ]; then
        say "FAILED (rc=$rc): state and recent logs"
        tools/compose.sh ps -a
        tools/compose.sh logs --no-color --tail 30 autoscaler worker-default worker-high
    fi
    if [ "${AUTOSCALE_E2E_KEEP:-0}" = 1 ]; then
        say "AUTOSCALE_E2E_KEEP=1: left running (ENV_FILE=$ENV_FILE COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME AUTOSCALE=1)"
    else
        [ -f "$ENV_FILE" ] && timeout 180 tools/compose.sh down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
        rm -rf "$work"
    fi
    say "exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- env file: generated secrets, free ports, short autoscaling knobs ---------------------------
tools/ensure-env.sh >/dev/null
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for var in WEB_PORT FLOWER_PORT EXPORTER_PORT QUEUE_METRICS_PORT; do
    sed -i "s/^${var}=.*/${var}=$(free_port)/" "$ENV_FILE"
done
# Its own image tag: a concurrent build of :latest (another checkout, make e2e) cannot change
# the images under test.
sed -i "s/^IMAGE_TAG=.*/IMAGE_TAG=autoscale-e2e/" "$ENV_FILE"
cat >> "$ENV_FILE" <<EOF
AUTOSCALER_PORT=$(free_port)
AUTOSCALE_POLLING_INTERVAL=5
AUTOSCALE_MAX_REPLICAS=3
AUTOSCALE_SCALE_DOWN_STABILIZATION_WINDOW=30
AUTOSCALE_SCALE_DOWN_PERCENT=100
EOF

# ---- engine (as tests/e2e/run.sh) ------------------------------------------------------------------
if ! tools/compose.sh version >/dev/null 2>&1; then
    say "no engine answers: setting up Podman with tools/container-engine"
    timeout 600 "$kit/setup-podman.sh" >/dev/null
    CE_IMAGES="python redis postgres" CE_PARALLEL=1 timeout 900 "$kit/build-images.sh" >/dev/null
    timeout 300 "$kit/engine.sh" start >/dev/null
    tools/compose.sh version >/dev/null
fi
command -v uv >/dev/null || python3 -m pip install -q uv

say "building images"
timeout 1500 make --no-print-directory images >"$work/images.log" 2>&1 || { tail -30 "$work/images.log"; exit 1; }
say "make up (AUTOSCALE=1)"
timeout 420 make --no-print-directory up >"$work/up.log" 2>&1 || { tail -30 "$work/up.log"; exit 1; }
say "stack healthy; running tests/autoscale"
timeout 900 uv run -q --no-project --with pytest==9.2.0 --with pytest-timeout==2.4.0 --with prometheus-client==0.21.1 \
    pytest tests/autoscale -v -p no:cacheprovider --timeout 600
timeout 300 make --no-print-directory down V=1 >/dev/null 2>&1
left=$(tools/compose.sh ps -a -q | wc -l)
[ "$left" = 0 ] || { say "make down left $left containers (autoscaled replicas must go too)"; exit 1; }
say "PASS"
