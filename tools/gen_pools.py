#!/usr/bin/env python3
"""Derives every per-pool setting of the stack from pools.yaml (docs/pools.md).

    python3 tools/gen_pools.py           rewrite the generated files (`make pools`)
    python3 tools/gen_pools.py --check   change nothing; exit 1 if one is stale (`make lint`)
    --root DIR                           work on another copy of the repository (tests)

Whole files it writes:  monitoring/prometheus/rules/celery-stack-pools.yml,
                        services/app/config/pools.json
Marked blocks it writes (between `# >>> generated from pools.yaml ...: <id>` and `# <<< <id>`):
  compose/compose.yaml (anchors, workers), compose/compose.autoscale.yaml (anchors),
  compose/compose.dev.yaml (dev-workers), helm/celery-stack/values.yaml (pools)
(compose/compose.rabbitmq.yaml names no pool: every worker reads the broker URL of x-app-env
and waits for `redis`, which waits for RabbitMQ there.)

pools.yaml is validated against the chart's own schema for a pool (values.schema.json), so
a value the chart would reject is rejected here, with the path of the bad value.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import textwrap

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRACE_MARGIN = 30  # seconds: the grace period is timeLimit + this unless the pool sets one
# Every pool in pools.yaml writes these out: nothing per pool is left to a default elsewhere.
REQUIRED = ["queues", "routes", "concurrency", "pool", "softTimeLimit", "timeLimit",
            "prefetchMultiplier", "maxTasksPerChild", "maxMemoryPerChild", "autoscaling", "alerts", "resources"]
THRESHOLDS = {  # alerts key -> recorded threshold series (celery-stack-alerts.yml uses them)
    "queueDepth": "queue_name:celery_queue_depth:alert_threshold",
    "waitP95Seconds": "queue_name:celery_queue_wait_time_seconds:p95_alert_threshold",
    "oldestMessageSeconds": "queue_name:celery_queue_oldest_message_age_seconds:alert_threshold",
}


class PoolsError(Exception):
    pass


# ---------------------------------------------------------------------------------- loading

def load(root: pathlib.Path) -> dict:
    path = root / "pools.yaml"
    data = yaml.safe_load(path.read_text())
    schema = json.loads((root / "helm/celery-stack/values.schema.json").read_text())
    workers = schema["properties"]["workers"]["properties"]
    pool_schema = dict(workers["pools"]["additionalProperties"], required=REQUIRED)
    top = {
        "type": "object", "additionalProperties": False, "required": ["compose", "pools"],
        "properties": {
            "compose": {"type": "object", "additionalProperties": False, "required": ["maxReplicas"],
                        "properties": {"maxReplicas": {"type": "integer", "minimum": 1}}},
            "pools": {**{k: v for k, v in workers["pools"].items() if k != "additionalProperties"},
                      "additionalProperties": pool_schema},
        },
    }
    errors = sorted(jsonschema.Draft7Validator(top).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise PoolsError("\n".join(
            f"pools.yaml: {'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors))
    pools = data["pools"]
    if "default" not in {q for p in pools.values() for q in p["queues"]}:
        raise PoolsError("pools.yaml: no pool consumes the `default` queue, where every task "
                         "no pool routes goes")
    routed: dict[str, str] = {}
    consumed: dict[str, str] = {}
    for name, p in pools.items():
        where = f"pools.yaml: pools.{name}"
        for queue in p["queues"]:
            if queue in consumed:  # one threshold per queue, one pool to scale for its backlog
                raise PoolsError(f"{where}.queues: {queue} is already consumed by pool "
                                 f"{consumed[queue]}")
            consumed[queue] = name
        if p["softTimeLimit"] and p["softTimeLimit"] >= p["timeLimit"]:
            raise PoolsError(f"{where}: softTimeLimit ({p['softTimeLimit']}) must be lower than "
                             f"timeLimit ({p['timeLimit']})")
        grace = grace_period(p)
        if grace <= p["timeLimit"]:
            raise PoolsError(f"{where}: terminationGracePeriodSeconds ({grace}) must be greater "
                             f"than timeLimit ({p['timeLimit']}), or running tasks are killed on "
                             f"every stop; leave it out to get timeLimit + {GRACE_MARGIN}")
        limit = p["resources"].get("limits", {}).get("memory")
        if limit and p["maxMemoryPerChild"] * p["concurrency"] > kib(limit):
            raise PoolsError(f"{where}: maxMemoryPerChild x concurrency exceeds "
                             f"resources.limits.memory ({limit})")
        a = p["autoscaling"]
        if a["minReplicas"] > a["maxReplicas"]:
            raise PoolsError(f"{where}.autoscaling: minReplicas exceeds maxReplicas")
        for task in p["routes"]:
            if task in routed:
                raise PoolsError(f"{where}.routes: {task} is already routed to pool {routed[task]}")
            routed[task] = name
    return data


def grace_period(pool: dict) -> int:
    return pool.get("terminationGracePeriodSeconds") or pool["timeLimit"] + GRACE_MARGIN


def kib(quantity: str) -> int:
    units = {"Ki": 1, "Mi": 1024, "Gi": 1024**2, "K": 1000 / 1024, "M": 1000**2 / 1024,
             "G": 1000**3 / 1024}
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|K|M|G)?", str(quantity))
    if not m:
        raise PoolsError(f"pools.yaml: memory quantity {quantity!r} is not understood")
    return int(m.group(1)) // 1024 if not m.group(2) else int(int(m.group(1)) * units[m.group(2)])


# ---------------------------------------------------------------------------------- derived

def all_queues(pools: dict) -> list[str]:
    return list(dict.fromkeys(q for p in pools.values() for q in p["queues"]))


def routes(pools: dict) -> dict[str, str]:
    return {task: p["queues"][0] for p in pools.values() for task in p["routes"]}


def metrics_pools(pools: dict) -> dict:
    return {n: {"queues": p["queues"], "concurrency": p["concurrency"]} for n, p in pools.items()}


def compose_memory(quantity: str) -> str:
    """Kubernetes quantity -> Compose (whose k/m/g are binary: 1Gi is 1g)."""
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi)", str(quantity))
    if not m:
        raise PoolsError(f"pools.yaml: use Ki/Mi/Gi for memory limits (Compose needs binary "
                         f"units), got {quantity!r}")
    return m.group(1) + m.group(2)[0]


def compose_cpus(quantity) -> str:
    q = str(quantity)
    return f"{int(q[:-1]) / 1000:g}" if q.endswith("m") else f"{float(q):g}"


def env_name(pool: str) -> str:
    return pool.upper().replace("-", "_")


def quoted(value) -> str:
    """A YAML scalar that stays a string (JSON, numbers) whatever it contains."""
    return "'" + str(value).replace("'", "''") + "'"


def compose_anchors(data: dict) -> str:
    pools = data["pools"]
    return f"""\
x-pools:
  # Every Django/Celery process declares every pool's queues and knows every route.
  queues: &pool-queues {",".join(all_queues(pools))}
  routes: &pool-routes {quoted(json.dumps(routes(pools)))}
  # celery-stack-metrics: each pool's queues and concurrency (the per-pool scaling signal).
  metrics-pools: &metrics-pools {quoted(json.dumps(metrics_pools(pools)))}
"""


def compose_workers(data: dict) -> str:
    out = []
    for i, (name, p) in enumerate(data["pools"].items()):
        image = ("    build: {<<: *app-build, target: worker}\n" if i == 0 else
                 f"    pull_policy: never  # the worker image, built by worker-{next(iter(data['pools']))}\n")
        limits = p["resources"].get("limits", {})
        limit_items = []
        if "cpu" in limits:
            limit_items.append(f'cpus: "{compose_cpus(limits["cpu"])}"')
        if "memory" in limits:
            limit_items.append(f"memory: {compose_memory(limits['memory'])}")
        out.append(f"""\
  worker-{name}:
    <<: *worker
{image}    environment:
      <<: *app-env
      CELERY_WORKER_POOL_NAME: {name}
      CELERY_WORKER_QUEUES: {",".join(p["queues"])}
      CELERY_WORKER_CONCURRENCY: "{p["concurrency"]}"
      CELERY_WORKER_POOL: {p["pool"]}
      CELERY_WORKER_PREFETCH_MULTIPLIER: "{p["prefetchMultiplier"]}"
      CELERY_TASK_SOFT_TIME_LIMIT: "{p["softTimeLimit"]}"
      CELERY_TASK_TIME_LIMIT: "{p["timeLimit"]}"
      CELERY_WORKER_MAX_TASKS_PER_CHILD: "{p["maxTasksPerChild"]}"
      CELERY_WORKER_MAX_MEMORY_PER_CHILD: "{p["maxMemoryPerChild"]}"
    stop_grace_period: {grace_period(p)}s
    deploy:
      resources:
        limits: {{{", ".join(limit_items)}}}
""")
    return textwrap.dedent("\n".join(out))


def compose_dev_workers(data: dict) -> str:
    return "".join(f"worker-{name}: *dev-worker\n" for name in data["pools"])


def compose_autoscale_anchors(data: dict) -> str:
    cap = data["compose"]["maxReplicas"]
    env, depends = [], []
    for name, p in data["pools"].items():
        a, e = p["autoscaling"], env_name(name)
        values = {"MIN_REPLICAS": max(a["minReplicas"], 1), "MAX_REPLICAS": min(a["maxReplicas"], cap),
                  "TARGET_PER_REPLICA": a["targetPerReplica"]}
        # .env: AUTOSCALE_<POOL>_<KNOB> for one pool, else AUTOSCALE_<KNOB> for all, else pools.yaml.
        env += [f"    AUTOSCALE_{e}_{knob}: ${{AUTOSCALE_{e}_{knob}:-${{AUTOSCALE_{knob}:-{value}}}}}"
                for knob, value in values.items()]
        depends.append(f"    worker-{name}: {{condition: service_healthy}}")
    services = ",".join(f"worker-{n}" for n in data["pools"])
    nl = "\n"
    return f"""\
x-pools:
  services: &pool-services {services}
  # Bounds and target per pool: pools.yaml, maxReplicas capped at {cap} on one host, unless
  # .env sets AUTOSCALE_<POOL>_<KNOB> (one pool) or AUTOSCALE_<KNOB> (every pool).
  env: &pool-autoscale-env
    AUTOSCALE_POOLS: {",".join(data["pools"])}
{nl.join(env)}
  # New replicas are clones of a running one: start once each pool has its first replica.
  depends: &pool-depends
{nl.join(depends)}
"""


def values_pools(data: dict) -> str:
    out = []
    for name, p in data["pools"].items():
        body = yaml.safe_dump(p, sort_keys=False, default_flow_style=None, width=100)
        out.append(f"{name}:\n" + "".join(f"  {line}\n" for line in body.splitlines()))
    return "".join(out)


def threshold_rules(data: dict) -> dict:
    """The recording rules the chart renders too (templates/prometheusrule.yaml)."""
    rules = []
    for key, record in THRESHOLDS.items():
        for name, p in data["pools"].items():
            for queue in p["queues"]:
                rules.append({"record": record, "expr": f"vector({p['alerts'][key]})",
                              "labels": {"pool": name, "queue_name": queue,
                                         "tier": p["alerts"]["tier"]}})
    return {"groups": [{"name": "celery-stack.pools.thresholds", "rules": rules}]}


def rules_file(data: dict) -> str:
    return ("# Generated from pools.yaml by `make pools` (tools/gen_pools.py): do not edit.\n"
            "# Each declared queue's alert thresholds, as series: celery-stack-alerts.yml compares\n"
            "# every queue with its own. The chart renders the same rules from workers.pools.\n"
            + yaml.safe_dump(threshold_rules(data), sort_keys=False, width=100))


def app_pools(data: dict) -> str:
    return json.dumps({"queues": all_queues(data["pools"]), "routes": routes(data["pools"])},
                      indent=2) + "\n"


# ---------------------------------------------------------------------------------- writing

def replace_block(text: str, block_id: str, body: str, path: str) -> str:
    pattern = re.compile(
        rf"^(?P<indent>[ \t]*)# >>> generated from pools\.yaml[^\n]*: {re.escape(block_id)}\n"
        rf".*?^[ \t]*# <<< {re.escape(block_id)}\n", re.S | re.M)
    m = pattern.search(text)
    if not m:
        raise PoolsError(f"{path}: no generated block {block_id!r} (markers missing)")
    indent = m.group("indent")
    lines = "".join(f"{indent}{line}\n" if line else "\n" for line in body.rstrip("\n").split("\n"))
    new = (f"{indent}# >>> generated from pools.yaml by `make pools` (tools/gen_pools.py): {block_id}\n"
           f"{lines}{indent}# <<< {block_id}\n")
    return text[:m.start()] + new + text[m.end():]


def outputs(root: pathlib.Path, data: dict) -> dict[str, str]:
    """path -> the text it must have."""
    blocks = {
        "compose/compose.yaml": {"anchors": compose_anchors(data), "workers": compose_workers(data)},
        "compose/compose.autoscale.yaml": {"anchors": compose_autoscale_anchors(data)},
        "compose/compose.dev.yaml": {"dev-workers": compose_dev_workers(data)},
        "helm/celery-stack/values.yaml": {"pools": values_pools(data)},
    }
    result = {}
    for path, ids in blocks.items():
        text = (root / path).read_text()
        for block_id, body in ids.items():
            text = replace_block(text, block_id, body, path)
        result[path] = text
    result["monitoring/prometheus/rules/celery-stack-pools.yml"] = rules_file(data)
    result["services/app/config/pools.json"] = app_pools(data)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument("--root", type=pathlib.Path, default=ROOT)
    args = parser.parse_args(argv)
    try:
        data = load(args.root)
        wanted = outputs(args.root, data)
    except PoolsError as exc:
        print(exc, file=sys.stderr)
        return 2
    stale = []
    for path, text in wanted.items():
        target = args.root / path
        if target.exists() and target.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            target.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print("Stale (pools.yaml changed, or a generated part was edited by hand): "
              + ", ".join(stale) + "\nRun `make pools` and commit.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
