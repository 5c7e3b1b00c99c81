#!/bin/sh
# Run Docker Compose v2 for this project against whichever engine this machine has:
# Docker, or Podman through its Docker-compatible API socket. Nothing is hard-coded; the first
# engine that answers wins:
#   1. $DOCKER_HOST, if set
#   2. the Docker socket          /var/run/docker.sock
#   3. rootful Podman             /run/podman/podman.sock
#   4. rootless Podman            $XDG_RUNTIME_DIR/podman/podman.sock
#   5. the test kit's Podman      ${CE_STATE:-/tmp/ce-state}/podman.sock (tools/container-engine)
# The compose client is `docker compose` (plugin), else a v2 `docker-compose`, else `podman compose`.
#
# Env: ENV_FILE (default .env), BROKER=rabbitmq (adds compose.rabbitmq.yaml, and rabbitmq.env
#      after ENV_FILE: the broker URL every service reads),
#      MONITORING=1 (adds compose.monitoring.yaml and the `monitoring` profile),
#      AUTOSCALE=1 (adds compose.autoscale.yaml: the autoscaler, with the engine socket mounted),
#      DEV=1 (adds compose.dev.yaml: make dev's source mounts and reloading, images <tag>-dev),
#      COMPOSE_PROJECT_NAME (default: celery-stack, from compose.yaml).
# Usage: tools/compose.sh <compose arguments>      e.g. tools/compose.sh ps
#        tools/compose.sh --engine-host             prints the DOCKER_HOST it found
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
env_file=${ENV_FILE:-$root/.env}
kit_state=${CE_STATE:-/tmp/ce-state}

say() { [ -n "${COMPOSE_SH_QUIET:-}" ] || echo "compose.sh: $*" >&2; }

answers() {  # $1 = unix socket path: does an engine API answer /_ping there? (testsupport/)
    [ -S "$1" ] || return 1
    PYTHONPATH="$root" python3 -m testsupport engine-answers "$1"
}

engine=docker
if [ -n "${DOCKER_HOST:-}" ]; then
    case "$DOCKER_HOST" in *podman*) engine=podman ;; esac
else
    for sock in /var/run/docker.sock /run/podman/podman.sock \
                "${XDG_RUNTIME_DIR:-/nonexistent}/podman/podman.sock" "$kit_state/podman.sock"; do
        if answers "$sock"; then
            export DOCKER_HOST="unix://$sock"
            case "$sock" in *podman*) engine=podman ;; esac
            break
        fi
    done
    [ -n "${DOCKER_HOST:-}" ] || {
        echo "compose.sh: no container engine answers (Docker socket or Podman API socket):" >&2
        echo "  tools/ensure-engine.sh sets one up here or prints the command that does (make up runs it)." >&2
        exit 1
    }
fi
# tools/ensure-engine.sh asks which engine was found.
if [ "${1:-}" = --engine-host ]; then echo "$DOCKER_HOST"; exit 0; fi
# The kit keeps its compose binary next to its socket.
case "$DOCKER_HOST" in "unix://$kit_state/"*) export PATH="$kit_state/bin:$PATH" ;; esac
if [ "$engine" = podman ]; then
    # Podman's API implements the classic build endpoint, not BuildKit sessions.
    export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
fi

if docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version --short 2>/dev/null | grep -q '^v\?2'; then
    compose=docker-compose
elif command -v podman >/dev/null 2>&1 && podman compose version >/dev/null 2>&1; then
    compose="podman compose"
else
    echo "compose.sh: Docker Compose v2 not found (docker compose plugin or docker-compose v2)." >&2
    exit 1
fi

files="-f $root/compose/compose.yaml"
broker_env=
case "${BROKER:-redis}" in
    redis) ;;
    rabbitmq)
        # rabbitmq.env comes second: its CELERY_BROKER_URL replaces the one of ENV_FILE.
        broker_env=$root/compose/rabbitmq.env
        files="$files -f $root/compose/compose.rabbitmq.yaml" ;;
    *) echo "compose.sh: BROKER=$BROKER: use redis (the default) or rabbitmq." >&2; exit 2 ;;
esac
if [ -n "${MONITORING:-}" ] && [ "${MONITORING}" != 0 ] && [ -f "$root/compose/compose.monitoring.yaml" ]; then
    files="$files -f $root/compose/compose.monitoring.yaml --profile monitoring"
fi
if [ -n "${AUTOSCALE:-}" ] && [ "${AUTOSCALE}" != 0 ]; then
    files="$files -f $root/compose/compose.autoscale.yaml"
    # The autoscaler gets the socket this script found, and its group. An owner-only socket
    # (rootful Podman: root:root 0600) leaves uid 0 as the only way in (still no capabilities).
    ENGINE_SOCKET=${DOCKER_HOST#unix://}
    ENGINE_SOCKET_GID=$(stat -c %g "$ENGINE_SOCKET")
    if [ -z "${AUTOSCALE_USER:-}" ] && [ "$(stat -c %A "$ENGINE_SOCKET" | cut -c6)" != w ]; then
        AUTOSCALE_USER=0
    fi
    export ENGINE_SOCKET ENGINE_SOCKET_GID ${AUTOSCALE_USER:+AUTOSCALE_USER}
    export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-celery-stack}"
fi
[ -f "$env_file" ] || { echo "compose.sh: $env_file is missing: run tools/ensure-env.sh (make up does)." >&2; exit 1; }
if [ -n "${DEV:-}" ] && [ "${DEV}" != 0 ]; then
    files="$files -f $root/compose/compose.dev.yaml"
    # make dev's images have watchfiles (APP_RELOAD) and a tag of their own: <IMAGE_TAG>-dev.
    tag=${IMAGE_TAG:-$(sed -n 's/^IMAGE_TAG=//p' "$env_file" | tail -n 1)}
    export APP_RELOAD=1 IMAGE_TAG="${tag:-latest}-dev"
fi

CELERY_STACK_REVISION=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
export CELERY_STACK_REVISION
say "$compose on $engine ($DOCKER_HOST)"
# shellcheck disable=SC2086  # $compose and $files are word lists built above, without user input
exec $compose --env-file "$env_file" ${broker_env:+--env-file "$broker_env"} $files "$@"
