"""Security context, secrets handling, checksums, labels, PDBs, NetworkPolicies, schema."""
import base64

import pytest

from conftest import CHART, CI_VALUES, CREDS, ENV_VALUES, pod_spec, render, render_error, workloads

ALL_VALUE_SETS = [[]] + [[f] for f in CI_VALUES + ENV_VALUES]
IDS = ["defaults"] + [f.name for f in CI_VALUES + ENV_VALUES]
SECRET_KEYS = {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"}


@pytest.fixture(scope="module", params=ALL_VALUE_SETS, ids=IDS)
def docs(request):
    return render(*request.param)


def test_every_pod_is_locked_down(docs):
    for obj in workloads(docs):
        spec = pod_spec(obj)
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, where
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        mounts_tmp = False
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", []))
        assert mounts_tmp, f"{where}: /tmp must be a writable emptyDir"


def test_credentials_never_in_configmaps(docs):
    for cm in docs.of("ConfigMap"):
        data = cm.get("data") or {}
        assert not SECRET_KEYS & set(data), cm["metadata"]["name"]
        for value in data.values():
            assert "s3cr3t" not in value and "secret@" not in value, cm["metadata"]["name"]


def test_credentials_in_config_extra_env_rejected():
    err = render_error(set_values={"config.extraEnv.DATABASE_URL": "postgres://x"})
    assert "config.extraEnv.DATABASE_URL: credentials must not go into the ConfigMap" in err


def test_chart_secret_holds_credentials(default_docs):
    secret = default_docs.get("Secret", "rel-celery-stack")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["DATABASE_URL"] == CREDS["secrets.databaseUrl"]
    assert data["CELERY_BROKER_URL"] == CREDS["secrets.brokerUrl"]
    assert data["DJANGO_SECRET_KEY"] == CREDS["secrets.djangoSecretKey"]
    assert data["FLOWER_BASIC_AUTH"] == CREDS["secrets.flowerBasicAuth"]


def test_existing_secret_is_used_and_none_created():
    docs = render(CHART / "ci" / "existing-secret-values.yaml", creds=False)
    assert not docs.of("Secret")
    refs = {e["valueFrom"]["secretKeyRef"]["name"]
            for obj in workloads(docs) for c in pod_spec(obj)["containers"]
            for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"celery-stack-credentials"}


def test_required_urls_fail_with_a_clear_message():
    keys = {k: CREDS[k] for k in ("secrets.djangoSecretKey", "secrets.flowerBasicAuth")}
    err = render_error(creds=False, set_values=keys)
    assert "secrets.databaseUrl is required (or set secrets.existingSecret" in err


def test_config_change_rolls_pods():
    before = render()
    after = render(set_values={"config.logLevel": "DEBUG"})
    for name in ("rel-celery-stack-web", "rel-celery-stack-worker-default", "rel-celery-stack-beat"):
        a = before.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        b = after.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert a != b, name


def test_recommended_labels_everywhere(docs):
    for obj in docs:
        labels = obj["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"


def test_pdbs_for_scalable_components_only(default_docs):
    assert default_docs.names("PodDisruptionBudget") == [
        "rel-celery-stack-web", "rel-celery-stack-worker-default", "rel-celery-stack-worker-high"]


def test_topology_spread_on_workers(default_docs):
    spec = pod_spec(default_docs.get("Deployment", "rel-celery-stack-worker-high"))
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["celery-stack/pool"] == "high"


def test_network_policies_deny_by_default_then_open_ports():
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    docs = render(set_values={"networkPolicy.enabled": True, "networkPolicy.metricsFrom": prometheus})
    names = docs.names("NetworkPolicy")
    assert "rel-celery-stack-default-deny" in names
    deny = docs.get("NetworkPolicy", "rel-celery-stack-default-deny")
    assert deny["spec"]["ingress"] == [] and deny["spec"]["policyTypes"] == ["Ingress"]
    exporter = docs.get("NetworkPolicy", "rel-celery-stack-exporter")
    assert sorted(r["ports"][0]["port"] for r in exporter["spec"]["ingress"]) == [9808, 9809]
    # Workers and beat serve nothing: no policy opens them.
    assert not [n for n in names if "worker" in n or "beat" in n]


@pytest.mark.parametrize("values,message", [
    ({"workers.pools.default.concurrency": 0}, "/workers/pools/default/concurrency"),
    ({"workers.pools.default.queues": []}, "minItems"),
    ({"workers.pools.Bad_Name": {"queues": ["x"]}}, "invalid propertyName 'Bad_Name'"),
    ({"workers.pools.default.pool": "processes"}, "value must be one of 'prefork', 'threads', 'solo', 'gevent', 'eventlet'"),
    ({"workers.pools.default.autoscaling.keda.trigger": "rabbitmq"}, "value must be one of 'prometheus', 'redis'"),
    ({"workers.pools.default.timeLimt": 10}, "additional properties 'timeLimt' not allowed"),
    ({"web.image.digest": "abc"}, "/web/image/digest"),
    ({"secrets.flowerBasicAuth": "nopassword"}, "/secrets/flowerBasicAuth"),
    ({"web.readinessProbe.periodSeconds": 0}, "/web/readinessProbe/periodSeconds"),
    ({"monitoring.serviceMonitor.interval": "30"}, "/monitoring/serviceMonitor/interval"),
    ({"unknownTopLevel": 1}, "additional properties 'unknownTopLevel' not allowed"),
    ({"flower.replicas": 2}, "/flower/replicas"),
])
def test_schema_rejects_bad_values(values, message):
    assert message in render_error(set_values=values)
