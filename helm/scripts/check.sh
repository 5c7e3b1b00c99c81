#!/usr/bin/env bash
# `make helm-check`: offline verification of helm/celery-stack (no cluster needed).
# Installs the pinned toolchain on first use (tools/helm/install.sh), then:
#   0. shellcheck on the scripts of helm/, k8s/ and tools/helm/
#   1. values.schema.json, VALUES.md and files/ (monitoring copies) are up to date
#   2. helm lint --strict and helm template for every value set
#   3. kubernetes-validate --strict, oldest and newest supported Kubernetes
#   4. KEDA / prometheus-operator custom resources against their schemas
#   5. promtool check rules on the PrometheusRules (when promtool is installed)
#   6. checkov and trivy config on every rendered set: zero failed checks
#   7. pytest helm/tests
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHART=$ROOT/helm/celery-stack
TOOLS=${HELM_TOOLS_DIR:-$ROOT/build/tools/helm}
OUT=$ROOT/build/helm-check
KUBE_OLDEST=1.27
KUBE_NEWEST=1.37
RELEASE=rel
NAMESPACE=celery-stack

"$ROOT/tools/helm/install.sh" "$TOOLS" >/dev/null
export PATH=$TOOLS/bin:$PATH
export HELM=$TOOLS/bin/helm

start=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "shellcheck (chart, k8s and toolchain scripts)"
shellcheck "$ROOT"/helm/scripts/*.sh "$ROOT"/k8s/scripts/*.sh "$ROOT"/tools/helm/install.sh
echo "  ok"

step "schema and monitoring copies are current"
"$TOOLS/venv/bin/python" "$ROOT/helm/scripts/gen_schema.py" --check  # and VALUES.md; needs PyYAML
"$ROOT/helm/scripts/sync_monitoring.sh" --check

# Value sets: chart defaults (plus the URLs and keys the chart requires under helm template),
# ci/*.yaml, k8s/values-*.yaml.
rm -rf "$OUT" && mkdir -p "$OUT/rendered"
declare -A SETS=([defaults]="--set secrets.databaseUrl=postgres://app:pw@db:5432/app --set secrets.brokerUrl=redis://:pw@redis:6379/0 --set secrets.djangoSecretKey=not-a-real-key --set secrets.flowerBasicAuth=admin:pw")
for f in "$CHART"/ci/*.yaml "$ROOT"/k8s/values-*.yaml; do
  [[ -e $f ]] && SETS[$(basename "$f" .yaml)]="-f $f"
done

step "helm lint --strict and helm template (${#SETS[@]} value sets)"
for name in $(printf '%s\n' "${!SETS[@]}" | sort); do
  # shellcheck disable=SC2086  # the set's arguments are meant to split
  helm lint --strict --quiet "$CHART" --kube-version "$KUBE_OLDEST.0" ${SETS[$name]} >/dev/null
  # shellcheck disable=SC2086
  helm template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_OLDEST.0" ${SETS[$name]} \
    > "$OUT/rendered/$name.yaml"
  printf '  %-28s %3d objects\n' "$name" "$(grep -c '^kind:' "$OUT/rendered/$name.yaml")"
done

step "kubernetes-validate --strict ($KUBE_OLDEST and $KUBE_NEWEST)"
for v in "$KUBE_OLDEST" "$KUBE_NEWEST"; do
  # Custom resources only warn here (no schema bundled); step 4 validates them.
  kubernetes-validate -k "$v" --strict --quiet --no-warn "$OUT"/rendered/*.yaml
  echo "  Kubernetes $v: ok"
done

step "custom resources (KEDA, prometheus-operator)"
CRD_MODELS_DIR=$TOOLS/node node "$ROOT/helm/scripts/validate_crds.mjs" "$OUT"/rendered/*.yaml | tail -1

step "promtool check rules"
if command -v promtool >/dev/null; then
  "$TOOLS/venv/bin/python" - "$OUT" <<'PY'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1]); n = 0
for f in sorted((out / "rendered").glob("*.yaml")):
    for d in yaml.safe_load_all(f.read_text()):
        if d and d["kind"] == "PrometheusRule":
            n += 1
            (out / f"rules-{f.stem}-{d['metadata']['name']}.yml").write_text(yaml.safe_dump(d["spec"]))
print(f"  {n} PrometheusRule objects extracted")
PY
  shopt -s nullglob; rules=("$OUT"/rules-*.yml); shopt -u nullglob
  if (( ${#rules[@]} )); then promtool check rules "${rules[@]}" >/dev/null && echo "  ok"; fi
else
  echo "  skipped: promtool not installed (apt-get install prometheus)"
fi

step "checkov (zero failed checks; skips are justified in helm/celery-stack/.checkov.yaml)"
checkov --config-file "$CHART/.checkov.yaml" -d "$OUT/rendered" | grep -E "checks|Check:|FAILED" | sed 's/^/  /'

step "trivy config (ignores are justified in helm/celery-stack/.trivyignore.yaml)"
trivy config --quiet --skip-check-update --exit-code 1 --ignorefile "$CHART/.trivyignore.yaml" "$OUT/rendered"
echo "  ok: no misconfigurations"

step "pytest helm/tests"
"$TOOLS/venv/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/helm/tests"

step "helm-check passed"
