#!/usr/bin/env bash
# Copies monitoring/ (the single source) into the chart's files/ directory:
#   monitoring/prometheus/rules/*.yml        -> helm/celery-stack/files/prometheus/rules/
#   monitoring/grafana/dashboards/*.json     -> helm/celery-stack/files/grafana/dashboards/
# Stale copies are removed. With --check, changes nothing and exits 1 on any drift.
# Not copied: celery-stack-pools.yml (the per-queue thresholds of pools.yaml): the chart
# renders its own from workers.pools (templates/prometheusrule.yaml).
# Helm cannot read files outside the chart directory, hence the copy.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FILES=$ROOT/helm/celery-stack/files
PAIRS=(
  "monitoring/prometheus/rules:prometheus/rules:yml"
  "monitoring/grafana/dashboards:grafana/dashboards:json"
)
check=false
[[ ${1:-} == --check ]] && check=true

drift=0
for pair in "${PAIRS[@]}"; do
  IFS=: read -r src dst ext <<<"$pair"
  src_dir=$ROOT/$src
  dst_dir=$FILES/$dst
  mkdir -p "$dst_dir"
  shopt -s nullglob
  sources=()
  for f in "$src_dir"/*."$ext"; do [[ $(basename "$f") == celery-stack-pools.yml ]] || sources+=("$f"); done
  copies=("$dst_dir"/*."$ext")
  shopt -u nullglob
  for f in "${sources[@]}"; do
    copy=$dst_dir/$(basename "$f")
    if ! cmp -s "$f" "$copy"; then
      drift=1
      if $check; then echo "drift: ${copy#"$ROOT"/} differs from ${f#"$ROOT"/}"; else cp "$f" "$copy"; echo "synced ${copy#"$ROOT"/}"; fi
    fi
  done
  for copy in "${copies[@]}"; do
    if [[ ! -e $src_dir/$(basename "$copy") ]]; then
      drift=1
      if $check; then echo "drift: ${copy#"$ROOT"/} has no source in $src/"; else rm "$copy"; echo "removed ${copy#"$ROOT"/}"; fi
    fi
  done
  echo "${src}: ${#sources[@]} file(s)"
done

if $check && [[ $drift == 1 ]]; then
  echo "The chart's copies of monitoring/ are out of date: run \`make chart-sync\` and commit." >&2
  exit 1
fi
exit 0
