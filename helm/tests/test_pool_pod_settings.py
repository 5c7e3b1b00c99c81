"""Per-pool priorityClassName, topologySpreadConstraints, pod labels and ServiceAccount,
falling back to the global ones."""
import pytest

from conftest import pod_spec, render, render_error

ZONE_SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
ROLE = {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/high-pool"}
VALUES = {
    "priorityClassName": "normal", "podLabels": {"team": "payments", "tier": "standard"},
    "workers.pools.high.priorityClassName": "critical",
    "workers.pools.high.podLabels": {"tier": "fast"},
    "workers.pools.high.topologySpreadConstraints": [ZONE_SPREAD],
    "workers.pools.high.serviceAccount": {"create": True, "annotations": ROLE},
}


def deployment(docs, suffix):
    return docs.get("Deployment", f"rel-celery-stack-{suffix}")


@pytest.fixture(scope="module")
def docs():
    return render(set_values=VALUES)


def test_pool_priority_class_overrides_the_global_one(docs):
    assert pod_spec(deployment(docs, "worker-high"))["priorityClassName"] == "critical"
    for other in ("worker-default", "web", "beat"):
        assert pod_spec(deployment(docs, other))["priorityClassName"] == "normal", other


def test_pool_pod_labels_merge_over_the_global_ones(docs):
    high = deployment(docs, "worker-high")["spec"]["template"]["metadata"]["labels"]
    assert high["tier"] == "fast" and high["team"] == "payments"
    assert high["celery-stack/pool"] == "high"
    default = deployment(docs, "worker-default")["spec"]["template"]["metadata"]["labels"]
    assert default["tier"] == "standard"


def test_pool_topology_spread_replaces_the_generated_one(docs):
    high = pod_spec(deployment(docs, "worker-high"))["topologySpreadConstraints"]
    # No labelSelector given: the pool spreads its own pods.
    assert high == [{**ZONE_SPREAD, "labelSelector": {"matchLabels": {
        "app.kubernetes.io/name": "celery-stack", "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "worker", "celery-stack/pool": "high"}}}]
    default = pod_spec(deployment(docs, "worker-default"))["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in default] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]


def test_pool_service_account_with_its_own_annotations(docs):
    accounts = {d["metadata"]["name"]: d for d in docs.of("ServiceAccount")}
    assert accounts["rel-celery-stack-worker-high"]["metadata"]["annotations"] == ROLE
    assert accounts["rel-celery-stack-worker-high"]["automountServiceAccountToken"] is False
    assert pod_spec(deployment(docs, "worker-high"))["serviceAccountName"] == "rel-celery-stack-worker-high"
    assert pod_spec(deployment(docs, "worker-default"))["serviceAccountName"] == "rel-celery-stack"
    assert pod_spec(deployment(docs, "web"))["serviceAccountName"] == "rel-celery-stack"


def test_pool_uses_an_existing_service_account_by_name():
    docs = render(set_values={"workers.pools.high.serviceAccount": {"name": "high-irsa"}})
    assert pod_spec(deployment(docs, "worker-high"))["serviceAccountName"] == "high-irsa"
    assert "high-irsa" not in docs.names("ServiceAccount")


def test_defaults_unchanged(default_docs):
    spec = pod_spec(deployment(default_docs, "worker-high"))
    assert "priorityClassName" not in spec and spec["serviceAccountName"] == "rel-celery-stack"
    assert default_docs.names("ServiceAccount") == ["rel-celery-stack", "rel-celery-stack-migrate"]


@pytest.mark.parametrize(("values", "message"), [
    ({"workers.pools.high.serviceAccount": {"name": "High_Pool"}}, "/workers/pools/high/serviceAccount/name"),
    ({"workers.pools.high.topologySpreadConstraints": [{"maxSkew": 1}]},
     "/workers/pools/high/topologySpreadConstraints/0"),
])
def test_bad_pool_settings_are_refused_naming_the_value(values, message):
    assert message in render_error(set_values=values)
