# celery-stack: shared Makefile. Each part adds its targets with a `## description`
# comment on the target line; `make help` lists them.
.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

# ---- Helm chart and Kubernetes (helm/, k8s/, tools/helm/) ---------------------------
.PHONY: helm-tools helm-check chart-sync k8s-up k8s-down
helm-tools: ## Install the pinned offline Helm toolchain into build/tools/helm (idempotent)
	tools/helm/install.sh

helm-check: ## Verify the chart offline: lint, render, k8s + CRD schemas, checkov, trivy, pytest
	helm/scripts/check.sh

chart-sync: ## Copy monitoring/ rules and dashboards into helm/celery-stack/files/
	helm/scripts/sync_monitoring.sh

k8s-up: ## kind cluster + local images + KEDA + kube-prometheus-stack + the chart
	k8s/scripts/up.sh

k8s-down: ## Delete the kind cluster made by k8s-up
	k8s/scripts/down.sh

# ---- Monitoring (monitoring/, services/metrics/, compose/compose.monitoring.yaml) ----------
.PHONY: monitoring-tools monitoring-check test-metrics up-monitoring
monitoring-tools: ## Install promtool + amtool (Debian prometheus, prometheus-alertmanager) if missing
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; }
	@promtool --version | head -1; amtool --version 2>&1 | head -1

monitoring-check: monitoring-tools ## promtool check/test rules, amtool check-config, dashboard checks
	promtool check rules monitoring/prometheus/rules/*.yml
	promtool test rules monitoring/prometheus/tests/*.yml
	promtool check config --syntax-only monitoring/prometheus/prometheus.yml
	amtool check-config monitoring/alertmanager/alertmanager.yml
	python3 monitoring/grafana/generate_dashboards.py --check
	python3 monitoring/check_dashboards.py $(if $(PROMETHEUS_URL),--prometheus $(PROMETHEUS_URL))

test-metrics: ## Companion exporter tests (real Redis db 2 on :6379, RabbitMQ on :5672, workers)
	cd services/metrics && uv sync --frozen -q && uv run --frozen pytest -q

up-monitoring: ## Start the stack plus Prometheus, Alertmanager and Grafana (profile monitoring)
	tools/ensure-env.sh
	MONITORING=1 tools/compose.sh up -d
