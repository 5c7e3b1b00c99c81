#!/usr/bin/env bash
# `make k8s-up`: a local kind cluster running celery-stack with KEDA and
# kube-prometheus-stack. Idempotent: re-running upgrades in place.
#
# Needs: kind, kubectl, helm (3.x) and docker or podman, with the five images
# built locally (see compose/: <IMAGE_PREFIX>-{web,worker,beat,flower,exporter}:<IMAGE_TAG>).
# Network: pulls kindest/node, the KEDA and kube-prometheus-stack charts and their images.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-celery-stack}
NAMESPACE=${NAMESPACE:-celery-stack}
RELEASE=${RELEASE:-celery-stack}
IMAGE_PREFIX=${IMAGE_PREFIX:-celery-stack}
IMAGE_TAG=${IMAGE_TAG:-latest}
# Pinned add-on chart versions (bump deliberately, then re-run `make k8s-up`).
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.33.1}
KEDA_CHART_VERSION=${KEDA_CHART_VERSION:-2.19.0}
KPS_CHART_VERSION=${KPS_CHART_VERSION:-79.7.1}
HELM=${HELM:-helm}

say() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

for tool in kind kubectl "$HELM"; do
  command -v "$tool" >/dev/null || die "$tool is not installed (see k8s/README.md, 'Requirements')"
done
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif command -v podman >/dev/null; then
  ENGINE=podman
  export KIND_EXPERIMENTAL_PROVIDER=podman
else
  die "need a container engine: docker or podman"
fi

say "kind cluster '$CLUSTER' ($ENGINE, $KIND_NODE_IMAGE)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "exists"
else
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$ROOT/k8s/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

say "loading images ${IMAGE_PREFIX}-*:${IMAGE_TAG}"
archive=$(mktemp -d)
trap 'rm -rf "$archive"' EXIT
image_values=()
for component in web worker beat flower exporter; do
  image="${IMAGE_PREFIX}-${component}:${IMAGE_TAG}"
  "$ENGINE" image inspect "$image" >/dev/null 2>&1 || die "image $image not found: build the images first (compose/README.md)"
  # Re-tag with the image ID: a rebuilt image gets a new tag, so re-running
  # k8s-up rolls the pods (a reused tag like `latest` with IfNotPresent would not).
  # Bare names also become docker.io/library/<name>, which is how the kubelet
  # resolves them (Podman would otherwise store localhost/<name>).
  id=$("$ENGINE" image inspect --format '{{.Id}}' "$image" | sed 's/^sha256://' | cut -c1-12)
  repo=${IMAGE_PREFIX}-${component}
  ref="$repo:$id"
  [[ $repo == */* ]] || ref="docker.io/library/$ref"
  "$ENGINE" tag "$image" "$ref"
  # An archive works for both engines (kind load docker-image needs docker).
  "$ENGINE" save -o "$archive/$component.tar" "$ref"
  kind load image-archive --name "$CLUSTER" "$archive/$component.tar"
  case $component in
    worker) key=workers.poolDefaults.image ;;
    *) key=$component.image ;;
  esac
  image_values+=(--set "$key.repository=$repo" --set "$key.tag=$id")
  echo "  $image -> $ref"
done

say "KEDA $KEDA_CHART_VERSION"
"$HELM" repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
"$HELM" upgrade --install keda kedacore/keda --version "$KEDA_CHART_VERSION" \
  --namespace keda --create-namespace --wait --timeout 5m

say "kube-prometheus-stack $KPS_CHART_VERSION"
"$HELM" repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
"$HELM" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KPS_CHART_VERSION" --namespace monitoring --create-namespace \
  -f "$ROOT/k8s/kube-prometheus-stack-values.yaml" --wait --timeout 10m

say "celery-stack (release $RELEASE, namespace $NAMESPACE)"
# Local image names carry no registry (values-kind.yaml sets image.registry="").
"$HELM" upgrade --install "$RELEASE" "$ROOT/helm/celery-stack" \
  --namespace "$NAMESPACE" --create-namespace \
  -f "$ROOT/k8s/values-kind.yaml" "${image_values[@]}" \
  --wait --timeout 10m

say "end-to-end check: helm test"
"$HELM" test "$RELEASE" --namespace "$NAMESPACE" --logs

cat <<EOT

celery-stack is running in kind cluster '$CLUSTER'.
  App:     kubectl -n $NAMESPACE port-forward svc/$RELEASE-web 8000:8000      -> http://localhost:8000/
  Flower:  kubectl -n $NAMESPACE port-forward svc/$RELEASE-flower 5555:5555   (user:password below)
           kubectl -n $NAMESPACE get secret $RELEASE -o jsonpath='{.data.FLOWER_BASIC_AUTH}' | base64 -d; echo
  Grafana: kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80
  Scaling: kubectl -n $NAMESPACE get scaledobject,hpa,deploy -w
  Remove:  make k8s-down
EOT
