# shellcheck shell=bash
# Sourced, not run, by the scripts that start their own copy of the Compose stack beside a
# developer's: tests/{e2e,dev,autoscale,chaos}/run.sh and bench/run.sh, from the repository
# root (or from the scratch copy of isolated_readme_pool). isolated_work exports ENV_FILE; the
# caller exports COMPOSE_PROJECT_NAME.

# isolated_start <label> <keep variable>: isolated_work, plus the harness the test scripts share.
# say and timed print under the label with the seconds since the start. On any exit the trap runs
# the caller's on_failure (if defined, when the script failed and the stack exists), removes the
# stack unless $<keep variable> is 1 (then it prints how to reach it), runs the caller's on_exit
# (if defined), prints every timed step, and exits with the script's status.
isolated_start() {
    ISOLATED_LABEL=$1 ISOLATED_KEEP_VAR=$2 ISOLATED_T0=$(date +%s)
    ISOLATED_TIMINGS=()
    isolated_work "$1"
    trap isolated_exit EXIT
    trap 'exit 130' INT TERM
}

say() { echo "[$ISOLATED_LABEL +$(( $(date +%s) - ISOLATED_T0 ))s] $*" >&2; }

timed() {  # timed <label> <command...>: run it, print and remember how long it took
    local label=$1 start rc=0 took; shift
    start=$(date +%s%N)
    "$@" || rc=$?
    took=$(awk -v ns=$(( $(date +%s%N) - start )) 'BEGIN { printf "%.1f", ns / 1e9 }')
    ISOLATED_TIMINGS+=("$(printf '%-40s %7s s  rc=%s' "$label" "$took" "$rc")")
    say "$label: ${took} s (rc=$rc)"
    return $rc
}

logged() {  # logged <file> <command...>: output to the file, its tail on failure
    local log=$1 rc=0; shift
    "$@" >"$log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || tail -30 "$log" >&2
    return $rc
}

isolated_exit() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -f "$ENV_FILE" ] && declare -F on_failure >/dev/null; then on_failure "$rc"; fi
    if [ "${!ISOLATED_KEEP_VAR:-0}" = 1 ]; then
        say "$ISOLATED_KEEP_VAR=1: left running; reach it with: cd $PWD && ENV_FILE=$ENV_FILE" \
            "COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME ${BROKER:+BROKER=$BROKER }${AUTOSCALE:+AUTOSCALE=$AUTOSCALE }${DEV:+DEV=$DEV }tools/compose.sh ps"
    else
        isolated_teardown
    fi
    if declare -F on_exit >/dev/null; then on_exit "$rc"; fi
    if [ ${#ISOLATED_TIMINGS[@]} -gt 0 ]; then printf '%s\n' "${ISOLATED_TIMINGS[@]/#/[$ISOLATED_LABEL] }" >&2; fi
    say "exit $rc"
    exit "$rc"
}

# isolated_project <override variable> <base name>: the run's Compose project, exported as
# COMPOSE_PROJECT_NAME; isolated_env_file tags the run's images with it too. Unless the variable
# names a project, every run gets its own, <base>-run<PID>, so two runs on one machine (CI beside
# a developer's run) never share containers, volumes or images: with one fixed name, a run once
# started on the Postgres volume another had left (another generated password) and failed.
isolated_project() {
    export COMPOSE_PROJECT_NAME=${!1:-$2-run$$}
}

# isolated_sweep: remove what earlier runs left when they died before their exit trap (killed,
# machine stopped): the containers, volumes, networks and images of every <base>-run<PID>
# project whose process is gone. Best effort; a named project (the override) is never touched.
isolated_sweep() {
    local project pid
    for project in $( { engine_client ps -a --format '{{.Label "com.docker.compose.project"}}'
                        engine_client volume ls --format '{{.Label "com.docker.compose.project"}}'; } 2>/dev/null \
                      | grep -E '^celery-stack-[a-z0-9-]+-run[0-9]+$' | sort -u); do
        pid=${project##*-run}
        if [ "$pid" = $$ ] || kill -0 "$pid" 2>/dev/null; then continue; fi
        say "removing $project, left by a run that is gone"
        isolated_remove_project "$project"
    done
    return 0
}

# isolated_remove_project <project>: its containers, volumes and networks, and the images tagged
# with its name (its own build: <tag>, and make dev's <tag>-dev).
isolated_remove_project() {
    local label="label=com.docker.compose.project=$1" kind ids
    ids=$(engine_client ps -aq --filter "$label")
    # shellcheck disable=SC2086  # lists of IDs
    [ -z "$ids" ] || engine_client rm -f $ids >/dev/null 2>&1
    for kind in volume network; do
        ids=$(engine_client "$kind" ls -q --filter "$label")
        # shellcheck disable=SC2086
        [ -z "$ids" ] || engine_client "$kind" rm $ids >/dev/null 2>&1
    done
    ids=$(engine_client image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "^[^:]+:$1(-dev)?\$")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || engine_client rmi --no-prune $ids >/dev/null 2>&1
    return 0
}

# engine_client <docker arguments>: the docker client against the engine tools/compose.sh finds.
engine_client() {
    [ -n "${ISOLATED_ENGINE_HOST:-}" ] || ISOLATED_ENGINE_HOST=$(tools/compose.sh --engine-host) || return
    DOCKER_HOST=$ISOLATED_ENGINE_HOST docker "$@"
}

# isolated_work <name>: a scratch directory ($ISOLATED_WORK) holding the stack's env file.
isolated_work() {
    ISOLATED_WORK=$(mktemp -d "/tmp/celery-stack-$1.XXXXXX")
    export ENV_FILE=$ISOLATED_WORK/$1.env COMPOSE_SH_QUIET=1
}

# isolated_teardown: remove the stack with its volumes, then the images tagged with the project's
# name (isolated_env_file) and the scratch directory.
isolated_teardown() {
    if [ -f "$ENV_FILE" ]; then
        timeout 300 tools/compose.sh down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
        isolated_remove_project "$COMPOSE_PROJECT_NAME" 2>/dev/null
    fi
    rm -rf "$ISOLATED_WORK"
}

# isolated_copy: a scratch copy of the working tree ($ISOLATED_WORK/repo, tracked and untracked
# files, not ignored ones), and change into it: what the stack runs, or mounts, is the copy's.
isolated_copy() {
    local copy=$ISOLATED_WORK/repo
    mkdir -p "$copy"
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$copy"
    cd "$copy" || return
}

# isolated_readme_pool: README's "Adding a pool" applied to a scratch copy of the working tree
# (isolated_copy): its pools.yaml entry (tests/e2e/add_readme_pool.py), then `make pools`.
# The stack the caller starts in the copy runs the third pool, `reports`.
isolated_readme_pool() {
    isolated_copy || return
    python3 tests/e2e/add_readme_pool.py . >&2
    make --no-print-directory pools >&2
}

free_port() { PYTHONPATH=. python3 -m testsupport free-port; }  # testsupport/, like the tests

# isolated_env_file: ENV_FILE gets generated secrets (tools/ensure-env.sh), a free loopback port
# for every published service, so it never clashes with `make up`, and the project's name as the
# image tag, so a concurrent build (make up's :latest, another run) never swaps the images under test.
isolated_env_file() {
    tools/ensure-env.sh >/dev/null
    local var
    for var in WEB_PORT FLOWER_PORT EXPORTER_PORT QUEUE_METRICS_PORT; do
        sed -i "s/^${var}=.*/${var}=$(free_port)/" "$ENV_FILE"
    done
    echo "AUTOSCALER_PORT=$(free_port)" >>"$ENV_FILE"
    sed -i "s/^IMAGE_TAG=.*/IMAGE_TAG=$COMPOSE_PROJECT_NAME/" "$ENV_FILE"
}

# ensure_engine: the engine and images of the stack the caller chose (BROKER, MONITORING,
# AUTOSCALE), through tools/ensure-engine.sh like `make up`: when no engine answers (CI, this kind
# of VM) it sets up rootful Podman with tools/container-engine, and on the kit's engine it builds
# a stand-in for each missing official image. Idempotent, and fast on a reused machine. Sets
# STARTED_ENGINE=1 when no engine answered before.
# shellcheck disable=SC2034  # read by the sourcing script
STARTED_ENGINE=0
ensure_engine() {
    # shellcheck disable=SC2034
    tools/compose.sh --engine-host >/dev/null 2>&1 || STARTED_ENGINE=1
    # `|| return`: callers may run this where `set -e` does not apply (cmd || rc=$?).
    tools/ensure-engine.sh || return
    isolated_sweep
}
