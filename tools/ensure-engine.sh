#!/usr/bin/env bash
# Make sure a container engine answers and holds every image the chosen stack needs, before a
# target starts the stack. make up, autoscale, up-monitoring, scale, images and the scripts of
# make e2e, autoscale-e2e, chaos and bench all come through here.
#
#   1. An engine answers (tools/compose.sh finds Docker or a Podman API socket): use it.
#      None answers, and this machine can host the Podman kit of tools/container-engine (Debian,
#      root): set the kit up, a progress line per step. Anywhere else: print the one command
#      that fixes it on this machine, and fail.
#   2. The images of the stack chosen by BROKER / MONITORING / AUTOSCALE (as tools/compose.sh):
#      the official images the services run and the base image the Dockerfile builds from. On the
#      kit's engine (no registry), a missing one is built as a local stand-in (the kit's
#      standins/, tagged with the official name). On any other engine Compose pulls it as usual.
#
# The product files keep naming the official images; the stand-ins are test infrastructure.
# Env: ENV_FILE (as tools/compose.sh; must exist: tools/ensure-env.sh), BROKER, MONITORING,
#      AUTOSCALE, CE_STATE (the kit's state directory, default /tmp/ce-state),
#      ENGINE_SETUP=0 (never set up the kit: print the command instead).
# Usage: tools/ensure-engine.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kit=$root/tools/container-engine
export CE_STATE=${CE_STATE:-/tmp/ce-state}
t0=$(date +%s)
say() { echo "ensure-engine [+$(( $(date +%s) - t0 ))s]: $*" >&2; }
engine_host() { COMPOSE_SH_QUIET=1 "$root/tools/compose.sh" --engine-host 2>/dev/null; }

# The one command that gives this machine an engine, when the kit cannot be used here.
fix_command() {
    local sudo=; [ "$(id -u)" = 0 ] || sudo="sudo "
    if [ "$(uname -s)" = Darwin ]; then
        echo "open -a Docker    # Docker Desktop (or Podman: podman machine init --now)"
    elif command -v dockerd >/dev/null 2>&1; then
        echo "${sudo}systemctl start docker"
    elif command -v podman >/dev/null 2>&1; then
        if [ -n "$sudo" ]; then echo "systemctl --user enable --now podman.socket"
        else echo "systemctl enable --now podman.socket"; fi
    elif [ -f /etc/debian_version ]; then
        echo "sudo make up    # as root, make up sets up Podman with tools/container-engine"
    else
        echo "install Docker Engine (https://docs.docker.com/engine/install/) or Podman, then start it"
    fi
}

can_host_kit() {
    [ "${ENGINE_SETUP:-1}" != 0 ] && [ "$(uname -s)" = Linux ] && [ -f /etc/debian_version ] \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

# step <n> <what> <log name> <command...>: run one kit step, its output in $CE_STATE/logs.
step() {
    local n=$1 what=$2 log=$CE_STATE/logs/$3.log; shift 3
    say "[$n/3] $what"
    if ! "$@" >"$log" 2>&1; then
        say "[$n/3] failed; the last lines of $log:"
        tail -20 "$log" >&2
        exit 1
    fi
}

# ---- 1. an engine -------------------------------------------------------------------------------
host=$(engine_host) || host=
if [ -z "$host" ]; then
    if ! can_host_kit; then
        echo "ensure-engine: no container engine answers (Docker, or Podman's API socket). To fix it:" >&2
        echo "  $(fix_command)" >&2
        exit 1
    fi
    say "no container engine answers: setting up rootful Podman with tools/container-engine (about 4 minutes the first time)"
    mkdir -p "$CE_STATE/logs"
    step 1 "installing Podman, runc, netavark and debootstrap with apt; writing containers.conf" \
        setup-podman timeout 900 "$kit/setup-podman.sh"
    step 2 "building a Debian base image and the python stand-in (debootstrap, then apt inside)" \
        build-images env CE_IMAGES=python timeout 900 "$kit/build-images.sh"
    step 3 "starting the Podman API service, its health ticker and Compose v2" \
        engine-start timeout 300 "$kit/engine.sh" start
    host=$(engine_host) || { say "the kit started, yet no engine answers: see $CE_STATE/logs"; exit 1; }
    say "engine ready: $host"
fi

# ---- 2. the images the chosen stack needs ----------------------------------------------------------
# Services without a build run an image as named; the built ones need the Dockerfile's base.
needed=$(COMPOSE_SH_QUIET=1 "$root/tools/compose.sh" config --format json | python3 -c '
import json, sys
services = json.load(sys.stdin)["services"].values()
built = {s.get("image") for s in services if "build" in s}
images = {s["build"].get("args", {}).get("PYTHON_IMAGE", "python:3.12-slim") for s in services if "build" in s}
images |= {s["image"] for s in services if "build" not in s and s.get("image") not in built}
print("\n".join(sorted(images)))')
socket=${host#unix://}
missing=
for image in $needed; do
    PYTHONPATH=$root python3 -m testsupport engine-has-image "$socket" "$image" || missing="$missing $image"
done
[ -n "$missing" ] || exit 0
if [ "$host" != "unix://$CE_STATE/podman.sock" ]; then
    say "not on this engine yet, Compose pulls them:$missing"
    exit 0
fi

# The kit's engine has no registry: build each missing image's stand-in, tagged with its name.
standin_for() {
    case "${1%:*}" in
        python|docker.io/library/python) echo python ;;
        redis|docker.io/library/redis) echo redis ;;
        postgres|docker.io/library/postgres) echo postgres ;;
        rabbitmq|docker.io/library/rabbitmq) echo rabbitmq ;;
        prom/prometheus|docker.io/prom/prometheus) echo prometheus ;;
    esac
}
standins='' tags='' names=''
for image in $missing; do
    s=$(standin_for "$image")
    if [ -z "$s" ]; then
        say "$image: tools/container-engine has no stand-in for it; Compose will try to pull it"
        continue
    fi
    case " $standins " in *" $s "*) ;; *) standins="$standins $s" ;; esac
    tags="$tags $image=$s" names="$names $image"
done
[ -n "$standins" ] || exit 0
mkdir -p "$CE_STATE/logs"
say "building local stand-ins for$names (the kit's engine has no registry; a minute or two each)"
log=$CE_STATE/logs/standins.log
if ! CE_IMAGES="${standins# }" CE_EXTRA_TAGS="${tags# }" timeout 900 "$kit/build-images.sh" >"$log" 2>&1; then
    say "building the stand-ins failed; the last lines of $log:"
    tail -20 "$log" >&2
    exit 1
fi
for pair in $tags; do
    PYTHONPATH=$root python3 -m testsupport engine-has-image "$socket" "${pair%=*}" \
        || { say "${pair%=*} is still missing after building its stand-in: see $log"; exit 1; }
done
say "stand-ins ready:$standins"
