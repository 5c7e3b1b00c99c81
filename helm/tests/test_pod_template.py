"""Every Deployment (web, beat, flower, exporter, each pool) gets its pod template from
celery-stack.podTemplate: the chart-wide pod settings reach all of them alike."""

from conftest import pod_spec, render

SHARED = {
    "podLabels": {"team": "payments"},
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"pool": "apps"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "apps", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
    "priorityClassName": "business",
}


def test_every_deployment_gets_the_shared_pod_settings():
    docs = render(set_values=SHARED)
    deployments = docs.of("Deployment")
    components = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments}
    assert components == {"web", "worker", "beat", "flower", "exporter"}
    for d in deployments:
        where, meta, spec = d["metadata"]["name"], d["spec"]["template"]["metadata"], pod_spec(d)
        assert meta["labels"]["team"] == "payments", where
        assert meta["labels"]["app.kubernetes.io/instance"] == "rel", where
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false", where
        assert "checksum/config" in meta["annotations"], where
        assert spec["serviceAccountName"] == "rel-celery-stack", where
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["imagePullSecrets"] == SHARED["imagePullSecrets"], where
        assert spec["nodeSelector"] == SHARED["nodeSelector"], where
        assert spec["tolerations"] == SHARED["tolerations"], where
        assert spec["affinity"] == SHARED["affinity"], where
        assert spec["priorityClassName"] == "business", where
        assert {"name": "tmp", "mountPath": "/tmp"} in spec["containers"][0]["volumeMounts"], where
        assert any(v["name"] == "tmp" for v in spec["volumes"]), where
