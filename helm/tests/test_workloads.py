"""Behaviour of the rendered workloads: beat, worker pools, web, flower, exporter, migrations."""
import json

import pytest

from conftest import CI_VALUES, ENV_VALUES, env_of, pod_spec, render, render_error

ALL_VALUE_SETS = [[]] + [[f] for f in CI_VALUES + ENV_VALUES]
IDS = ["defaults"] + [f.name for f in CI_VALUES + ENV_VALUES]


@pytest.fixture(scope="module", params=ALL_VALUE_SETS, ids=IDS)
def docs(request):
    return render(*request.param)


# ---------------------------------------------------------------- beat

def test_beat_is_single_recreate_and_never_autoscaled(docs):
    beat = docs.get("Deployment", "rel-celery-stack-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    targets = [d["spec"]["scaleTargetRef"]["name"] for d in docs.of("ScaledObject") + docs.of("HorizontalPodAutoscaler")]
    assert "rel-celery-stack-beat" not in targets
    container = pod_spec(beat)["containers"][0]
    assert container["args"] == ["bin/beat"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["bin/heartbeat-check"]


def test_beat_replicas_cannot_be_configured():
    err = render_error(set_values={"beat.replicas": 2})
    assert "replicas" in err and "additional properties" in err.lower()


# ---------------------------------------------------------------- workers

def worker_deployments(docs):
    return [d for d in docs.of("Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"]


def test_one_deployment_per_pool_with_its_env(default_docs):
    names = sorted(d["metadata"]["name"] for d in worker_deployments(default_docs))
    assert names == ["rel-celery-stack-worker-default", "rel-celery-stack-worker-high"]
    expected = {"default": ("default", "2", "300", "360"), "high": ("high", "4", "30", "45")}
    for pool, (queues, conc, soft, hard) in expected.items():
        dep = default_docs.get("Deployment", f"rel-celery-stack-worker-{pool}")
        c = pod_spec(dep)["containers"][0]
        env = env_of(c)
        assert c["args"] == ["bin/worker"]
        assert env["CELERY_WORKER_POOL_NAME"]["value"] == pool
        assert env["CELERY_WORKER_QUEUES"]["value"] == queues
        assert env["CELERY_WORKER_CONCURRENCY"]["value"] == conc
        assert env["CELERY_TASK_SOFT_TIME_LIMIT"]["value"] == soft
        assert env["CELERY_TASK_TIME_LIMIT"]["value"] == hard
        assert dep["spec"]["selector"]["matchLabels"]["celery-stack/pool"] == pool


def test_grace_period_exceeds_hard_time_limit_everywhere(docs):
    for dep in worker_deployments(docs):
        spec = pod_spec(dep)
        limit = int(env_of(spec["containers"][0])["CELERY_TASK_TIME_LIMIT"]["value"])
        assert spec["terminationGracePeriodSeconds"] > limit, dep["metadata"]["name"]


def test_grace_period_not_above_time_limit_fails_clearly():
    err = render_error(set_values={"workers.pools.high.terminationGracePeriodSeconds": 45})
    assert "workers.pools.high: terminationGracePeriodSeconds (45) must be greater than timeLimit (45)" in err


def test_soft_limit_must_be_below_hard_limit():
    err = render_error(set_values={"workers.pools.default.softTimeLimit": 400})
    assert "softTimeLimit (400) must be lower than timeLimit (360)" in err


def test_visibility_timeout_if_set_must_cover_every_time_limit():
    err = render_error(set_values={"config.brokerVisibilityTimeout": 300})
    assert "config.brokerVisibilityTimeout (300) must exceed workers.pools.default.timeLimit" in err


def test_visibility_timeout_unset_is_left_to_each_pool():
    assert "CELERY_BROKER_VISIBILITY_TIMEOUT" not in json.dumps(list(render()))


@pytest.mark.parametrize("limit,per_child,ok", [
    ("1Gi", 524288, True), ("1Gi", 524289, False), ("1024Mi", 600000, False),
    ("1000M", 480000, True), ("1000M", 500000, False), ("1073741824", 524289, False),
])
def test_memory_recycling_fits_the_container_limit(limit, per_child, ok):
    values = {"workers.pools.default.resources.limits.memory": limit,
              "workers.pools.default.maxMemoryPerChild": per_child}
    if ok:
        render(set_values=values)
    else:
        err = render_error(set_values=values)
        assert "workers.pools.default: maxMemoryPerChild" in err and "would be OOMKilled" in err


def test_worker_probes_use_heartbeat_never_inspect_ping(docs):
    for dep in worker_deployments(docs):
        c = pod_spec(dep)["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["exec"]["command"] == ["bin/heartbeat-check"]
    assert "inspect ping" not in json.dumps(list(docs))


def test_adding_a_pool_is_one_map_entry():
    docs = render(set_values={"workers.pools.reports": {"queues": ["reports", "exports"], "concurrency": 1}})
    dep = docs.get("Deployment", "rel-celery-stack-worker-reports")
    c = pod_spec(dep)["containers"][0]
    env = env_of(c)
    assert env["CELERY_WORKER_QUEUES"]["value"] == "reports,exports"
    # Unset keys come from poolDefaults.
    assert env["CELERY_TASK_TIME_LIMIT"]["value"] == "360"
    assert pod_spec(dep)["terminationGracePeriodSeconds"] == 390  # timeLimit + 30: derived, never set
    assert c["resources"]["limits"]["memory"] == "1Gi"
    pools = json.loads(env_of(pod_spec(docs.get("Deployment", "rel-celery-stack-exporter"))["containers"][1])["METRICS_POOLS"]["value"])
    assert pools["reports"] == {"queues": ["reports", "exports"], "concurrency": 1}


def test_disabled_pool_renders_nothing():
    docs = render(set_values={"workers.pools.high.enabled": False})
    assert not [d for d in docs if d["metadata"]["name"].endswith("worker-high")]
    pools = json.loads(env_of(pod_spec(docs.get("Deployment", "rel-celery-stack-exporter"))["containers"][1])["METRICS_POOLS"]["value"])
    assert list(pools) == ["default"]


def test_fixed_replicas_only_without_autoscaler(docs):
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs.of("ScaledObject") + docs.of("HorizontalPodAutoscaler")}
    for dep in [*worker_deployments(docs), docs.get("Deployment", "rel-celery-stack-web")]:
        name = dep["metadata"]["name"]
        assert ("replicas" in dep["spec"]) == (name not in scaled), name


# ---------------------------------------------------------------- exporter

def test_exporter_single_replica_two_containers_pools_from_values(default_docs):
    dep = default_docs.get("Deployment", "rel-celery-stack-exporter")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    exporter, metrics = pod_spec(dep)["containers"]
    assert exporter["args"] == ["celery-exporter"]
    assert env_of(exporter)["CE_BROKER_URL"]["valueFrom"]["secretKeyRef"]["key"] == "CELERY_BROKER_URL"
    assert env_of(exporter)["CE_QUEUES"]["value"] == "default,high"
    assert metrics["args"] == ["celery-stack-metrics"]
    assert metrics["ports"][0]["containerPort"] == 9809
    assert metrics["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert json.loads(env_of(metrics)["METRICS_POOLS"]["value"]) == {
        "default": {"queues": ["default"], "concurrency": 2},
        "high": {"queues": ["high"], "concurrency": 4},
    }


def test_queue_metrics_reads_the_database_unless_turned_off(default_docs):
    metrics = pod_spec(default_docs.get("Deployment", "rel-celery-stack-exporter"))["containers"][1]
    assert env_of(metrics)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    off = render(set_values={"exporter.queueMetrics.databaseGauges": False})
    metrics = pod_spec(off.get("Deployment", "rel-celery-stack-exporter"))["containers"][1]
    assert "DATABASE_URL" not in env_of(metrics)
    assert "CELERY_BROKER_URL" in env_of(metrics)


# ---------------------------------------------------------------- web, flower

def test_web_probes(default_docs):
    c = pod_spec(default_docs.get("Deployment", "rel-celery-stack-web"))["containers"][0]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hosts = env_of(c)["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    assert hosts[0] == "$(POD_IP)" and "rel-celery-stack-web" in hosts
    names = [e["name"] for e in c["env"]]
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")


def test_flower_auth_from_secret(default_docs):
    c = pod_spec(default_docs.get("Deployment", "rel-celery-stack-flower"))["containers"][0]
    ref = env_of(c)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "rel-celery-stack", "key": "FLOWER_BASIC_AUTH"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthcheck"


# ---------------------------------------------------------------- migrations, helm test

def test_migrations_hook_by_default(default_docs):
    job = default_docs.get("Job", "rel-celery-stack-migrate")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    c = pod_spec(job)["containers"][0]
    assert c["args"] == ["bin/migrate"]
    assert c["image"].endswith("/celery-stack-web:0.1.0")
    # The pre-install hook runs before the chart's Secret exists: it reads an earlier hook's copy.
    secret = default_docs.get("Secret", "rel-celery-stack-migrate")
    assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"


def test_migrations_without_hooks_for_gitops():
    docs = render(set_values={"migrations.useHelmHooks": False})
    [job] = docs.of("Job")
    assert job["metadata"]["name"].startswith("rel-celery-stack-migrate-")
    assert "helm.sh/hook" not in job["metadata"]["annotations"]
    assert docs.names("Secret") == ["rel-celery-stack"]
    other = render(set_values={"migrations.useHelmHooks": False, "image.tag": "9.9.9"})
    assert other.of("Job")[0]["metadata"]["name"] != job["metadata"]["name"]


def test_helm_test_enqueues_and_waits(default_docs):
    pod = default_docs.get("Pod", "rel-celery-stack-test-enqueue")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][-1]
    assert '"/api/tasks/add", {"args": [2, 3]}' in script
    assert "status == 202" in script and '"SUCCESS"' in script and "== 5" in script


def test_app_pods_wait_for_migrations(docs):
    for dep in docs.of("Deployment"):
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        inits = [c["name"] for c in pod_spec(dep).get("initContainers", [])]
        expected = ["wait-for-migrations"] if component in ("web", "worker", "beat") else []
        # First, before the component's own initContainers (ci/pod-extras-values.yaml).
        assert [n for n in inits if n == "wait-for-migrations"] == expected, dep["metadata"]["name"]
        assert inits[:len(expected)] == expected, dep["metadata"]["name"]
    init = pod_spec(docs.get("Deployment", "rel-celery-stack-beat"))["initContainers"][0]
    assert "manage.py migrate --check" in init["args"][-1]


def test_in_chart_postgres_runs_migrations_as_a_plain_job():
    from conftest import CHART
    docs = render(CHART / "ci" / "in-chart-data-values.yaml", creds=False)
    [job] = docs.of("Job")
    assert "helm.sh/hook" not in job["metadata"]["annotations"]
    assert docs.names("Secret") == ["rel-celery-stack"]
