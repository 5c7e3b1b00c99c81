"""Compose and the chart run the same pools: every pool setting of the rendered chart equals the
Compose services', except the differences declared below, on purpose, with their reason.

Compose is read from compose/*.yaml as YAML (anchors and merge keys resolved); the generated
worker services carry literal values, so no .env is needed.
"""
import json
import pathlib
import re
import shutil

import pytest
import yaml

from conftest import ROOT, env_of, pod_spec, render

COMPOSE = ROOT / "compose"
POOLS = yaml.safe_load((ROOT / "pools.yaml").read_text())
# setting -> why Compose differs from the chart. Anything else that differs fails.
ON_PURPOSE = {
    "autoscaling.maxReplicas": "one host: Compose caps every pool at pools.yaml compose.maxReplicas",
    "resources.requests": "scheduling hints for Kubernetes; Compose applies only the limits",
}
KEDA = {"workers.poolDefaults.autoscaling.type": "keda", "monitoring.prometheusRule.enabled": True}


def compose(name, root=COMPOSE):
    return yaml.safe_load((root / name).read_text())


def default_of(value):
    """'${VAR:-4}' -> '4' (the value with nothing set in .env); literals unchanged."""
    value = str(value)
    while m := re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value):
        value = m.group(1)
    return value


def mem_bytes(q):
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|m|g|K|M|G)?", str(q))
    mult = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
            "k": 2**10, "m": 2**20, "g": 2**30, "K": 2**10, "M": 2**20, "G": 2**30}  # Compose: binary
    return int(m.group(1)) * mult[m.group(2)]


def cpus(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def chart_settings(docs, name):
    """Every pool setting the chart gives pool `name`, flattened."""
    dep = docs.get("Deployment", f"rel-celery-stack-worker-{name}")
    c = pod_spec(dep)["containers"][0]
    env = {k: e["value"] for k, e in env_of(c).items() if "value" in e and k.startswith(("CELERY_WORKER_", "CELERY_TASK_"))}
    so = docs.get("ScaledObject", f"rel-celery-stack-worker-{name}")["spec"]
    limits = c["resources"]["limits"]
    return {
        **{f"env.{k}": v for k, v in env.items()},
        "grace": pod_spec(dep)["terminationGracePeriodSeconds"],
        "resources.limits.cpu": cpus(limits["cpu"]),
        "resources.limits.memory": mem_bytes(limits["memory"]),
        "resources.requests": c["resources"].get("requests"),
        "autoscaling.minReplicas": so["minReplicaCount"],
        "autoscaling.maxReplicas": so["maxReplicaCount"],
        "autoscaling.target": int(so["triggers"][0]["metadata"]["threshold"]),
    }


def compose_settings(name, root=COMPOSE):
    svc = compose("compose.yaml", root)["services"][f"worker-{name}"]
    env = {k: str(v) for k, v in svc["environment"].items() if k.startswith(("CELERY_WORKER_", "CELERY_TASK_"))}
    # The queues and routes every process gets are compared once, in the test below.
    env = {k: v for k, v in env.items() if k not in ("CELERY_TASK_QUEUES", "CELERY_TASK_ROUTES")}
    limits = svc["deploy"]["resources"]["limits"]
    scaler = compose("compose.autoscale.yaml", root)["services"]["autoscaler"]["environment"]
    key = name.upper().replace("-", "_")
    target = int(default_of(scaler[f"AUTOSCALE_{key}_TARGET_PER_REPLICA"]))
    return {
        **{f"env.{k}": v for k, v in env.items()},
        "grace": int(svc["stop_grace_period"].rstrip("s")),
        "resources.limits.cpu": cpus(limits["cpus"]),
        "resources.limits.memory": mem_bytes(limits["memory"]),
        "resources.requests": None,
        "autoscaling.minReplicas": int(default_of(scaler[f"AUTOSCALE_{key}_MIN_REPLICAS"])),
        "autoscaling.maxReplicas": int(default_of(scaler[f"AUTOSCALE_{key}_MAX_REPLICAS"])),
        # 0 = the pool's concurrency, as in the chart (which renders the resolved number).
        "autoscaling.target": target or int(svc["environment"]["CELERY_WORKER_CONCURRENCY"]),
    }


def test_same_pools_in_compose_and_chart():
    docs = render(set_values=KEDA)
    chart = sorted(d["metadata"]["labels"]["celery-stack/pool"] for d in docs.of("Deployment")
                   if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker")
    services = compose("compose.yaml")["services"]
    assert sorted(s.removeprefix("worker-") for s in services if s.startswith("worker-")) == chart
    assert chart == sorted(POOLS["pools"])
    assert compose("compose.autoscale.yaml")["services"]["autoscaler"]["environment"]["AUTOSCALE_POOLS"].split(",") == list(POOLS["pools"])


@pytest.mark.parametrize("name", sorted(POOLS["pools"]))
def test_every_pool_setting_agrees(name):
    chart, comp = chart_settings(render(set_values=KEDA), name), compose_settings(name)
    differences = {k: (chart.get(k), comp.get(k)) for k in chart.keys() | comp.keys() if chart.get(k) != comp.get(k)}
    unexplained = {k: v for k, v in differences.items() if k not in ON_PURPOSE}
    assert not unexplained, f"pool {name}: (chart, compose) differ: {unexplained}"
    # The declared differences are what they claim to be, nothing more.
    if "autoscaling.maxReplicas" in differences:
        assert comp["autoscaling.maxReplicas"] == POOLS["compose"]["maxReplicas"] < chart["autoscaling.maxReplicas"]


def test_queues_routes_and_pool_lists_agree():
    docs = render(set_values=KEDA)
    data = docs.get("ConfigMap", "rel-celery-stack")["data"]
    app_env = compose("compose.yaml")["x-app-env"]
    assert app_env["CELERY_TASK_QUEUES"] == data["CELERY_TASK_QUEUES"]
    assert json.loads(app_env["CELERY_TASK_ROUTES"]) == json.loads(data["CELERY_TASK_ROUTES"])
    exporter = pod_spec(docs.get("Deployment", "rel-celery-stack-exporter"))["containers"]
    services = compose("compose.yaml")["services"]
    assert services["exporter"]["environment"]["CE_QUEUES"] == env_of(exporter[0])["CE_QUEUES"]["value"]
    assert (json.loads(services["queue-metrics"]["environment"]["METRICS_POOLS"])
            == json.loads(env_of(exporter[1])["METRICS_POOLS"]["value"]))
    # Processes started without the environment (tests, a laptop) get the same from pools.json.
    defaults = json.loads((ROOT / "services/app/config/pools.json").read_text())
    assert ",".join(defaults["queues"]) == data["CELERY_TASK_QUEUES"]
    assert defaults["routes"] == json.loads(data["CELERY_TASK_ROUTES"])


@pytest.mark.parametrize("edit", [
    ('CELERY_WORKER_CONCURRENCY: "4"', 'CELERY_WORKER_CONCURRENCY: "2"'),
    ("stop_grace_period: 75s", "stop_grace_period: 60s"),
    ("memory: 768M", "memory: 1G"),
])
def test_a_hand_edit_of_compose_is_caught(tmp_path, edit):
    """The comparison is not vacuous: one changed value of worker-high is a difference."""
    shutil.copytree(COMPOSE, tmp_path / "compose")
    path = tmp_path / "compose/compose.yaml"
    text = path.read_text()
    start = text.index("  worker-high:")
    assert edit[0] in text[start:]
    path.write_text(text[:start] + text[start:].replace(edit[0], edit[1], 1))
    chart = chart_settings(render(set_values=KEDA), "high")
    tampered = compose_settings("high", tmp_path / "compose")
    assert {k for k in chart if chart[k] != tampered.get(k)} - set(ON_PURPOSE)


def test_compose_files_parse_as_compose_sees_them():
    """YAML merge keys in the generated blocks resolve (PyYAML and Compose agree on them)."""
    worker = compose("compose.yaml")["services"]["worker-high"]
    assert worker["healthcheck"]["test"] == ["CMD", "bin/heartbeat-check"]
    assert worker["environment"]["CELERY_TASK_QUEUES"]  # from x-app-env
    assert pathlib.Path(COMPOSE / "compose.yaml").read_text().count("bin/heartbeat-check") == 1


def test_the_broker_is_chosen_once():
    """Every service that talks to the broker reads one URL (x-broker-url); BROKER=rabbitmq
    changes it with one variable (rabbitmq.env), and the override names no service but its own
    and `redis`, which every broker user waits for: nothing per pool or per service to forget."""
    base = compose("compose.yaml")
    url = base["x-broker-url"]
    users = {}
    for name, svc in base["services"].items():
        env = svc.get("environment") or {}
        for key in ("CELERY_BROKER_URL", "CE_BROKER_URL"):
            if key in env:
                users[name] = env[key]
    assert set(users) >= {"migrate", "web", "beat", "flower", "exporter", "queue-metrics",
                          *(f"worker-{p}" for p in POOLS["pools"])}
    assert set(users.values()) == {url} and url.startswith("${CELERY_BROKER_URL:-redis://")
    # Each of them waits for a healthy redis (migrate needs only the database).
    for name in set(users) - {"migrate"}:
        assert base["services"][name]["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    rabbit = compose("compose.rabbitmq.yaml")["services"]
    assert set(rabbit) == {"rabbitmq", "redis"}
    assert rabbit["redis"] == {"depends_on": {"rabbitmq": {"condition": "service_healthy"}}}
    variables = dict(line.split("=", 1) for line in (COMPOSE / "rabbitmq.env").read_text().splitlines()
                     if line and not line.startswith("#"))
    assert variables["CELERY_BROKER_URL"].startswith("amqp://") and "@rabbitmq:5672/" in variables["CELERY_BROKER_URL"]
