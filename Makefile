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
