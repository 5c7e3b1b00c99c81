"""README "Adding a pool", run as written: its pools.yaml entry and `make pools`
(tools/gen_pools.py), on a scratch copy of the repository; then the chart of that copy.

`make e2e` runs the same steps against a real Compose stack (tests/e2e/test_pools.py).
"""
import json
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from conftest import HELM, ROOT, Rendered, env_of, pod_spec

COPIED = ["pools.yaml", "compose", "helm/celery-stack", "monitoring/prometheus/rules",
          "services/app/config/pools.json", "tools/gen_pools.py"]


def readme_entry() -> str:
    """The yaml block of README's "Adding a pool" section, unindented from its list item."""
    section = ROOT.joinpath("README.md").read_text().split("### Adding a pool", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return textwrap.dedent(block)


@pytest.fixture
def copy(tmp_path):
    for rel in COPIED:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return tmp_path


def gen(root, *args):
    return subprocess.run([sys.executable, str(root / "tools/gen_pools.py"), "--root", str(root), *args],
                          capture_output=True, text=True)


def add_entry(root, entry):
    pools = root / "pools.yaml"
    pools.write_text(pools.read_text() + "\n" + textwrap.indent(entry, "  "))


def test_readme_steps_add_a_working_pool_everywhere(copy):
    entry = readme_entry()
    assert yaml.safe_load(entry)["reports"]["routes"] == ["jobs.tasks.count_widgets"]
    add_entry(copy, entry)
    stale = gen(copy, "--check")
    assert stale.returncode == 1 and "compose/compose.yaml" in stale.stderr  # lint would catch it
    done = gen(copy)
    assert done.returncode == 0, done.stderr
    assert gen(copy, "--check").returncode == 0

    services = yaml.safe_load((copy / "compose/compose.yaml").read_text())["services"]
    worker = services["worker-reports"]["environment"]
    assert worker["CELERY_WORKER_QUEUES"] == "reports"
    assert worker["CELERY_TASK_QUEUES"] == "default,high,reports"
    assert json.loads(worker["CELERY_TASK_ROUTES"])["jobs.tasks.count_widgets"] == "reports"
    assert services["worker-reports"]["stop_grace_period"] == "630s"  # timeLimit 600 + 30
    assert json.loads(services["queue-metrics"]["environment"]["METRICS_POOLS"])["reports"] == {
        "queues": ["reports"], "concurrency": 1}
    assert "reports" in services["exporter"]["environment"]["CE_QUEUES"].split(",")
    # The RabbitMQ override names no pool: the new worker reads the broker URL of x-app-env.
    assert (copy / "compose/compose.rabbitmq.yaml").read_text() == (ROOT / "compose/compose.rabbitmq.yaml").read_text()
    scaler = yaml.safe_load((copy / "compose/compose.autoscale.yaml").read_text())["services"]
    assert scaler["autoscaler"]["environment"]["AUTOSCALE_POOLS"] == "default,high,reports"
    assert "worker-reports" in scaler["autoscaler"]["depends_on"]
    assert scaler["engine-proxy"]["environment"]["ENGINE_PROXY_SERVICES"].endswith(",worker-reports")
    app = json.loads((copy / "services/app/config/pools.json").read_text())
    assert app["routes"]["jobs.tasks.count_widgets"] == "reports"
    rules = yaml.safe_load((copy / "monitoring/prometheus/rules/celery-stack-pools.yml").read_text())
    thresholds = {(r["record"], r["labels"]["queue_name"]): r["expr"] for r in rules["groups"][0]["rules"]}
    assert thresholds[("queue_name:celery_queue_depth:alert_threshold", "reports")] == "vector(500)"

    # The chart of the copy deploys it with no values of its own.
    out = subprocess.run([HELM, "template", "rel", str(copy / "helm/celery-stack"), "--namespace", "demo",
                          "--set", "secrets.databaseUrl=postgres://a:b@db/app",
                          "--set", "secrets.brokerUrl=redis://:p@redis:6379/0",
                          "--set", "secrets.djangoSecretKey=k", "--set", "secrets.flowerBasicAuth=admin:pw"],
                         capture_output=True, text=True, check=True).stdout
    docs = Rendered(d for d in yaml.safe_load_all(out) if d)
    dep = docs.get("Deployment", "rel-celery-stack-worker-reports")
    assert env_of(pod_spec(dep)["containers"][0])["CELERY_TASK_TIME_LIMIT"]["value"] == "600"
    data = docs.get("ConfigMap", "rel-celery-stack")["data"]
    assert json.loads(data["CELERY_TASK_ROUTES"])["jobs.tasks.count_widgets"] == "reports"


@pytest.mark.parametrize("change,message", [
    ({"timeLimit": 500}, "softTimeLimit (540) must be lower than timeLimit (500)"),
    ({"terminationGracePeriodSeconds": 600}, "terminationGracePeriodSeconds (600) must be greater"),
    ({"routes": ["jobs.tasks.add"]}, "jobs.tasks.add is already routed to pool high"),
    ({"queues": ["high"]}, "high is already consumed by pool high"),
    ({"concurrency": 0}, "pools.reports.concurrency: 0 is less than the minimum of 1"),
    ({"maxMemoryPerChild": 1048576}, "maxMemoryPerChild x concurrency exceeds"),
    ({"prefetch": 1}, "'prefetch' was unexpected"),
])
def test_bad_entries_are_refused_with_their_path(copy, change, message):
    entry = yaml.safe_load(readme_entry())
    entry["reports"].update(change)
    add_entry(copy, yaml.safe_dump(entry, sort_keys=False))
    before = (copy / "compose/compose.yaml").read_text()
    proc = gen(copy)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert (copy / "compose/compose.yaml").read_text() == before  # nothing half-written
