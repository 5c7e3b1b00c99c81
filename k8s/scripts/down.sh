#!/usr/bin/env bash
# `make k8s-down`: delete the kind cluster made by `make k8s-up` (and everything in it).
set -euo pipefail
CLUSTER=${CLUSTER:-celery-stack}
command -v kind >/dev/null || { echo "error: kind is not installed" >&2; exit 1; }
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; } && command -v podman >/dev/null; then
  export KIND_EXPERIMENTAL_PROVIDER=podman
fi
kind delete cluster --name "$CLUSTER"
