"""KEDA ScaledObjects, the HPA fallback, and the rules that keep them safe."""
import pytest

from conftest import CHART, render, render_error

KEDA = {"workers.poolDefaults.autoscaling.type": "keda"}

# Fields of ScaledObject.spec in KEDA 2.x. The CRD models do not flag unknown
# fields, so the test does.
SCALEDOBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                     "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
                     "triggers"}


def test_no_autoscaler_by_default(default_docs):
    assert not default_docs.of("ScaledObject")
    assert not default_docs.of("HorizontalPodAutoscaler")


def test_keda_prometheus_trigger_per_pool():
    docs = render(set_values=KEDA)
    assert docs.names("ScaledObject") == ["rel-celery-stack-worker-default", "rel-celery-stack-worker-high"]
    for pool, target in (("default", "2"), ("high", "4")):
        so = docs.get("ScaledObject", f"rel-celery-stack-worker-{pool}")
        spec = so["spec"]
        assert set(spec) <= SCALEDOBJECT_SPEC
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": f"rel-celery-stack-worker-{pool}"}
        [trigger] = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"
        sel = f'pool="{pool}",namespace="demo"'
        assert trigger["metadata"]["query"] == (
            f"sum(celery_pool_queued_messages{{{sel}}}) + sum(celery_pool_active_tasks{{{sel}}})")
        # Default target per replica = the pool's concurrency.
        assert trigger["metadata"]["threshold"] == target
        assert trigger["metadata"]["ignoreNullValues"] == "false"
        assert spec["minReplicaCount"] == 1 and spec["maxReplicaCount"] == 10
        assert spec["pollingInterval"] == 15 and spec["cooldownPeriod"] == 300
        # KEDA names its HPA keda-hpa-<name>; a pool switched to type hpa must not clash with it.
        assert "name" not in spec["advanced"]["horizontalPodAutoscalerConfig"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
        assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2}
        assert "replicas" not in docs.get("Deployment", f"rel-celery-stack-worker-{pool}")["spec"]
    assert not docs.of("HorizontalPodAutoscaler")


def test_keda_knobs_are_exposed():
    docs = render(set_values={**KEDA,
                              "workers.pools.default.autoscaling.targetPerReplica": 5,
                              "workers.pools.default.autoscaling.minReplicas": 2,
                              "workers.pools.default.autoscaling.maxReplicas": 30,
                              "workers.pools.default.autoscaling.keda.pollingInterval": 5,
                              "workers.pools.default.autoscaling.keda.activationThreshold": 3,
                              "workers.pools.default.autoscaling.keda.prometheus.namespaced": False,
                              "workers.pools.default.autoscaling.behavior.scaleDown.stabilizationWindowSeconds": 900})
    spec = docs.get("ScaledObject", "rel-celery-stack-worker-default")["spec"]
    meta = spec["triggers"][0]["metadata"]
    assert meta["threshold"] == "5" and meta["activationThreshold"] == "3"
    assert "namespace=" not in meta["query"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"]) == (2, 30, 5)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 900


def test_keda_redis_trigger_sums_priority_sublists():
    docs = render(CHART / "ci" / "in-chart-data-values.yaml", creds=False)
    spec = docs.get("ScaledObject", "rel-celery-stack-worker-default")["spec"]
    names = [t["metadata"]["listName"] for t in spec["triggers"]]
    assert names == ["default", "default\x06\x163", "default\x06\x166", "default\x06\x169"]
    assert all(t["type"] == "redis" for t in spec["triggers"])
    assert all(t["metadata"]["address"] == "rel-celery-stack-redis:6379" for t in spec["triggers"])
    mod = spec["advanced"]["scalingModifiers"]
    assert mod["formula"] == "l0 + l1 + l2 + l3"
    assert mod["target"] == "2" and mod["metricType"] == "AverageValue"
    auth = docs.get("TriggerAuthentication", "rel-celery-stack-worker-default")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "rel-celery-stack", "key": "REDIS_PASSWORD"}]


def test_redis_trigger_needs_an_address():
    err = render_error(set_values={**KEDA, "workers.pools.high.autoscaling.keda.trigger": "redis"})
    assert "workers.pools.high.autoscaling.keda.redis.address (host:port) is required" in err


def test_hpa_fallback_external_and_cpu():
    docs = render(CHART / "ci" / "hpa-values.yaml")
    assert not docs.of("ScaledObject")
    hpa = docs.get("HorizontalPodAutoscaler", "rel-celery-stack-worker-default")
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "celery_pool_scaling_signal"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"pool": "default"}
    # target 3 tasks per replica / concurrency 2 = 1.5 of the signal per replica
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1500m"}
    cpu = docs.get("HorizontalPodAutoscaler", "rel-celery-stack-worker-high")["spec"]["metrics"][0]
    assert cpu["resource"]["target"]["averageUtilization"] == 60
    assert docs.get("HorizontalPodAutoscaler", "rel-celery-stack-worker-high")["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_keda_and_hpa_are_mutually_exclusive():
    err = render_error(set_values={"workers.pools.default.autoscaling.type": "both"})
    assert "value must be one of 'none', 'keda', 'hpa'" in err
    # The Airflow-style boolean does not exist, so it cannot contradict `type`.
    err = render_error(set_values={"workers.pools.default.autoscaling.keda.enabled": True})
    assert "additional properties 'enabled' not allowed" in err


@pytest.mark.parametrize("pool_type,cooldown,message", [
    ("hpa", 900, "minReplicas 0 needs type keda"),
    ("keda", 300, "scale-to-zero (minReplicas 0) needs keda.cooldownPeriod (300) greater than timeLimit (360)"),
])
def test_scale_to_zero_only_where_safe(pool_type, cooldown, message):
    err = render_error(set_values={"workers.pools.default.autoscaling.type": pool_type,
                                   "workers.pools.default.autoscaling.minReplicas": 0,
                                   "workers.pools.default.autoscaling.keda.cooldownPeriod": cooldown})
    assert message in err


def test_scale_to_zero_with_long_cooldown():
    docs = render(CHART / "ci" / "keda-values.yaml")
    spec = docs.get("ScaledObject", "rel-celery-stack-worker-default")["spec"]
    assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] == 900
    # Extra trigger (memory) is kept; KEDA takes the max of the two.
    assert [t["type"] for t in spec["triggers"]] == ["prometheus", "memory"]
    assert docs.get("ScaledObject", "rel-celery-stack-worker-high")["spec"]["minReplicaCount"] == 1


def test_min_above_max_fails():
    err = render_error(set_values={**KEDA, "workers.pools.high.autoscaling.minReplicas": 5,
                                   "workers.pools.high.autoscaling.maxReplicas": 2})
    assert "workers.pools.high.autoscaling: minReplicas (5) must not exceed maxReplicas (2)" in err
