"""Issue 14, "Wrong today": values a production adopter writes, rendered as they would be."""
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest
import yaml

from conftest import (
    CHART,
    CI_VALUES,
    CREDS,
    ENV_VALUES,
    HELM,
    ROOT,
    Rendered,
    env_of,
    helm_template,
    pod_spec,
    render,
    render_error,
    workloads,
)

ALL_VALUE_SETS = [[]] + [[f] for f in CI_VALUES + ENV_VALUES]
IDS = ["defaults"] + [f.name for f in CI_VALUES + ENV_VALUES]


@pytest.fixture(scope="module", params=ALL_VALUE_SETS, ids=IDS)
def docs(request):
    return render(*request.param)


def containers(obj):
    spec = pod_spec(obj)
    return spec["containers"] + spec.get("initContainers", [])


# ---------------------------------------------------------------- 1. image digests

def test_a_digest_pins_one_repository_only(docs):
    """A digest names one build: two repositories never share it (five build targets)."""
    repos_by_digest = {}
    for obj in workloads(docs):
        for c in containers(obj):
            if "@" in c["image"]:
                ref, digest = c["image"].split("@")
                repos_by_digest.setdefault(digest, set()).add(ref.rsplit(":", 1)[0])
    for digest, repos in repos_by_digest.items():
        assert len(repos) == 1, f"{digest} appended to {sorted(repos)}"


def test_digest_is_per_component():
    d = "sha256:" + "a" * 64
    docs = render(set_values={"web.image.digest": d})
    images = {c["image"] for obj in workloads(docs) for c in containers(obj)}
    pinned = {i for i in images if "@" in i}
    assert pinned == {f"ghcr.io/celery-stack/celery-stack-web:0.1.0@{d}"}


def test_global_digest_is_refused_naming_the_component_values():
    err = render_error(set_values={"image.digest": "sha256:" + "b" * 64})
    assert "image.digest" in err and "web.image.digest" in err and "workers.poolDefaults.image.digest" in err


# ---------------------------------------------------------------- 2. NetworkPolicy peers

def test_no_network_policy_rule_is_open_to_everyone(docs):
    for policy in docs.of("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: a rule without `from` admits any source"
        # Egress policies (ci/pod-extras-values.yaml): a rule without `to` allows any destination.
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: a rule without `to` allows any destination"


def test_empty_peer_list_closes_its_ports():
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    docs = render(set_values={"networkPolicy.enabled": True, "networkPolicy.webFrom": peers})
    web = docs.get("NetworkPolicy", "rel-celery-stack-web")["spec"]["ingress"]
    assert {r["ports"][0]["port"] for r in web} == {8000}
    assert all(r["from"] for r in web)
    assert not [p for p in docs.of("NetworkPolicy") if p["metadata"]["name"] in ("rel-celery-stack-exporter", "rel-celery-stack-flower")]


# ---------------------------------------------------------------- 3. the chart-made Secret

URLS = {"secrets.databaseUrl": "postgres://app:pw@db:5432/app", "secrets.brokerUrl": "redis://:pw@redis:6379/0"}


def test_gitops_render_without_keys_fails_instead_of_new_random_ones():
    err = render_error(set_values=URLS, creds=False)
    assert "secrets.djangoSecretKey, secrets.flowerBasicAuth: empty, and this render cannot read the cluster" in err


def test_in_chart_data_passwords_are_required_too_under_helm_template():
    values = {"secrets.djangoSecretKey": "k", "secrets.flowerBasicAuth": "admin:pw",
              "redis.enabled": True, "postgresql.enabled": True}
    err = render_error(set_values=values, creds=False)
    assert "redis.password, postgresql.password: empty" in err


def secret_checksums(docs):
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
            for d in docs.of("Deployment") + docs.of("StatefulSet")}


def test_checksum_follows_the_secret_content_not_the_values():
    base = {"secrets.existingSecret": "creds"}
    # Values the chart ignores with an existingSecret change nothing the pods use.
    assert secret_checksums(render(set_values=base)) == secret_checksums(
        render(set_values={**base, "secrets.databaseUrl": "postgres://other:pw@db:5432/app"}))
    # A changed in-chart Redis password changes the Secret, so every pod rolls.
    data = {"redis.enabled": True, "redis.password": "one"}
    before, after = secret_checksums(render(set_values=data)), secret_checksums(render(set_values={**data, "redis.password": "two"}))
    assert all(before[name] != after[name] for name in before)


def test_no_hook_secret_outlives_the_release(default_docs):
    secrets = default_docs.of("Secret")
    app = default_docs.get("Secret", "rel-celery-stack")
    assert "helm.sh/hook" not in app["metadata"].get("annotations", {}), "a hook Secret is not deleted by helm uninstall"
    for s in secrets:
        ann = s["metadata"].get("annotations", {})
        if "helm.sh/hook" in ann:
            assert "hook-succeeded" in ann["helm.sh/hook-delete-policy"], s["metadata"]["name"]
            assert s["data"] == app["data"]
    # The migrations hook reads the hook copy (the Secret above does not exist yet at pre-install).
    job = default_docs.get("Job", "rel-celery-stack-migrate")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in pod_spec(job)["containers"][0]["env"] if "valueFrom" in e}
    assert refs == {"rel-celery-stack-migrate"}


# ---------------------------------------------------------------- 4. migrations Job and test pod

TAINTED_POOL = {"nodeSelector": {"pool": "apps"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "apps", "effect": "NoSchedule"}],
                "priorityClassName": "business", "podAnnotations": {"sidecar.istio.io/inject": "false"}}


def one_shot_pods(docs):
    return [docs.of("Job")[0], docs.get("Pod", "rel-celery-stack-test-enqueue")]


def test_migrations_and_test_pod_follow_the_global_scheduling():
    docs = render(set_values=TAINTED_POOL)
    for obj in one_shot_pods(docs):
        spec, where = pod_spec(obj), obj["metadata"]["name"]
        assert spec["nodeSelector"] == TAINTED_POOL["nodeSelector"], where
        assert spec["tolerations"] == TAINTED_POOL["tolerations"], where
        assert spec["priorityClassName"] == "business", where
        meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false", where


def test_migrations_and_test_pod_take_their_own_scheduling():
    own = {"nodeSelector": {"pool": "batch"}, "podAnnotations": {"a": "b"}}
    docs = render(set_values={**TAINTED_POOL, "migrations.nodeSelector": own["nodeSelector"],
                              "migrations.podAnnotations": own["podAnnotations"], "tests.nodeSelector": own["nodeSelector"]})
    job, pod = one_shot_pods(docs)
    assert pod_spec(job)["nodeSelector"] == pod_spec(pod)["nodeSelector"] == {"pool": "batch"}
    assert job["spec"]["template"]["metadata"]["annotations"]["a"] == "b"



@pytest.mark.parametrize("change", [{"migrations.podAnnotations": {"a": "b"}}, {"tolerations": TAINTED_POOL["tolerations"]}])
def test_gitops_migrations_job_gets_a_new_name_when_its_pod_template_changes(change):
    """A Job's pod template is immutable: Argo CD / Flux could not apply the change in place."""
    gitops = {"migrations.useHelmHooks": False}
    [before] = render(set_values=gitops).of("Job")
    [after] = render(set_values={**gitops, **change}).of("Job")
    assert before["metadata"]["name"] != after["metadata"]["name"]

def test_migrations_run_as_the_configured_service_account():
    docs = render(set_values={"serviceAccount.create": False, "serviceAccount.name": "app-irsa"})
    assert pod_spec(docs.of("Job")[0])["serviceAccountName"] == "app-irsa"


def test_migrations_hook_gets_a_hook_service_account_like_the_chart_one(default_docs):
    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/app"}
    docs = render(set_values={"serviceAccount.annotations": annotations})
    name = pod_spec(docs.get("Job", "rel-celery-stack-migrate"))["serviceAccountName"]
    sa = docs.get("ServiceAccount", name)
    ann = sa["metadata"]["annotations"]
    assert ann["eks.amazonaws.com/role-arn"] == annotations["eks.amazonaws.com/role-arn"]
    assert int(ann["helm.sh/hook-weight"]) < 0 and "hook-succeeded" in ann["helm.sh/hook-delete-policy"]
    assert sa["automountServiceAccountToken"] is False


# ---------------------------------------------------------------- 5. one key, one annotation

class StrictLoader(yaml.SafeLoader):
    """Refuses a mapping with a key twice, as kustomize and the API server do."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark)
        return super().construct_mapping(node, deep)


def test_same_annotation_globally_and_per_component_renders_once_component_wins():
    values = {"podAnnotations": {"team": "platform", "sidecar.istio.io/inject": "true"},
              "web.podAnnotations": {"sidecar.istio.io/inject": "false"},
              "workers.pools.default.podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
              "workers.pools.default.safeToEvict": False}
    proc = helm_template(set_values=values)
    assert proc.returncode == 0, proc.stderr
    docs = Rendered(d for d in yaml.load_all(proc.stdout, Loader=StrictLoader) if d)
    web = docs.get("Deployment", "rel-celery-stack-web")["spec"]["template"]["metadata"]["annotations"]
    assert web["sidecar.istio.io/inject"] == "false" and web["team"] == "platform"
    worker = docs.get("Deployment", "rel-celery-stack-worker-default")["spec"]["template"]["metadata"]["annotations"]
    assert worker["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"  # safeToEvict: false is the chart's promise


# ---------------------------------------------------------------- 6. accepted, then failing in the cluster

@pytest.mark.parametrize("values,message", [
    ({"web.autoscaling.enabled": True, "web.autoscaling.minReplicas": 5, "web.autoscaling.maxReplicas": 3},
     "web.autoscaling: minReplicas (5) must not exceed maxReplicas (3)"),
    ({"web.ingress.enabled": True}, "web.ingress.hosts must list at least one host"),
    ({"flower.ingress.enabled": True}, "flower.ingress.hosts must list at least one host"),
    ({"workers.pools.default.resources.limits.memory": "2GB"}, "/workers/pools/default/resources/limits/memory"),
    ({"web.resources.requests.memory": "512mb"}, "/web/resources/requests/memory"),
    ({"web.resources.limits.cpu": "1 core"}, "/web/resources/limits/cpu"),
    ({"secrets.existingSecret": "Celery_Credentials"}, "/secrets/existingSecret"),
    ({"workers.pools.bulk": {"queues": ["high"]}}, "workers.pools.high.queues: high is consumed by another enabled pool too (bulk)"),
])
def test_values_the_cluster_would_refuse_fail_at_render_naming_the_value(values, message):
    assert message in render_error(set_values=values)


@pytest.mark.parametrize("limit,per_child,ok", [
    ("1.5Gi", 786432, True), ("1.5Gi", 786433, False), ("2G", 976562, True), ("2G", 976563, False),
    ("2147483648", 1048576, True), ("2147483648", 1048577, False),
])
def test_memory_check_understands_every_accepted_quantity(limit, per_child, ok):
    values = {"workers.pools.default.resources.limits.memory": limit, "workers.pools.default.maxMemoryPerChild": per_child}
    if ok:
        render(set_values=values)
    else:
        assert "workers.pools.default: maxMemoryPerChild" in render_error(set_values=values)


# ---------------------------------------------------------------- 7. labels

def pod_templates(docs):
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


def test_a_chart_bump_restarts_no_pod(tmp_path):
    chart = tmp_path / "celery-stack"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(meta.read_text().replace("\nversion:", "\nversion: 9.9.9\nold_version:"))
    args = [a for k, v in {**CREDS, "redis.enabled": "true", "redis.password": "pw"}.items() for a in ("--set", f"{k}={v}")]

    def templates(path):
        out = subprocess.run([HELM, "template", "rel", str(path), "-n", "demo", *args], capture_output=True, text=True, check=True).stdout
        return pod_templates([d for d in yaml.safe_load_all(out) if d])

    assert templates(chart) == templates(CHART)


def test_version_label_is_the_deployed_image_tag():
    docs = render(set_values={"image.tag": "2.0.0", "web.image.tag": "2.0.1"})
    templates = pod_templates(docs)
    assert templates["rel-celery-stack-web"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.1"
    assert templates["rel-celery-stack-worker-high"]["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.0"
    assert docs.get("Deployment", "rel-celery-stack-web")["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.1"


# ---------------------------------------------------------------- 8. helm test and NOTES follow the pools

@pytest.mark.parametrize("values,pool,queue", [
    ({}, "high", "high"),
    ({"workers.pools.high.enabled": False}, "default", "default"),
    ({"workers.pools.high.routes": [], "workers.pools.fast": {"queues": ["fast"], "routes": ["jobs.tasks.add"]}}, "fast", "fast"),
])
def test_helm_test_names_the_pool_that_runs_add(values, pool, queue):
    pod = render(set_values=values).get("Pod", "rel-celery-stack-test-enqueue")
    env = env_of(pod["spec"]["containers"][0])
    assert (env["TEST_POOL"]["value"], env["TEST_QUEUE"]["value"]) == (pool, queue)
    assert "TEST_POOL" in pod["spec"]["containers"][0]["args"][-1]


def test_notes_name_a_configured_pool(tmp_path):
    from test_notes import render_notes

    args = [a for k, v in CREDS.items() for a in ("--set", f"{k}={v}")]
    args += ["--set", "workers.pools.default.enabled=false", "--set-json", 'workers.pools.main={"queues":["default"]}']
    notes = render_notes(tmp_path, *args)
    assert "deployment/rel-celery-stack-worker-high " in notes and "worker-default" not in notes


# ---------------------------------------------------------------- 9. in-chart Redis

REDIS = {"redis.enabled": True, "redis.password": "pw-9f3Kx", "secrets.brokerUrl": ""}


def redis_statefulset(values=None):
    return render(set_values={**REDIS, **(values or {})}).get("StatefulSet", "rel-celery-stack-redis")


def test_redis_keeps_queued_tasks_on_a_volume_by_default():
    sts = redis_statefulset()
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    assert not [v for v in pod_spec(sts)["volumes"] if v["name"] == "data"]


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_redis_password_never_on_the_command_line_and_aof_everysec(tmp_path):
    container = pod_spec(redis_statefulset())["containers"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The rendered command, run here: only the data dir and the port differ.
    script = container["command"][-1].replace("--dir /data", f"--dir {tmp_path} --port {port} --bind 127.0.0.1")
    assert script != container["command"][-1]
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": REDIS["redis.password"]}
    proc = subprocess.Popen([*container["command"][:-1], script], env=env)
    try:
        cli = ["redis-cli", "-p", str(port)]
        for _ in range(50):
            if subprocess.run([*cli, "ping"], capture_output=True, text=True).stdout.strip():
                break
            time.sleep(0.1)
        assert "NOAUTH" in subprocess.run([*cli, "ping"], capture_output=True, text=True).stdout
        authed = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": REDIS["redis.password"]}

        def get(key):
            return subprocess.run([*cli, "config", "get", key], env=authed, capture_output=True, text=True).stdout.split()[-1]

        assert (get("appendonly"), get("appendfsync"), get("maxmemory-policy")) == ("yes", "everysec", "noeviction")
        cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read().decode()
        assert "redis-server" in cmdline and REDIS["redis.password"] not in cmdline
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- 10. the CRD check refuses unknown fields

MODELS = pathlib.Path(os.environ.get("CRD_MODELS_DIR") or ROOT / "build/tools/helm/node")


@pytest.mark.skipif(not (MODELS / "node_modules").exists() or not shutil.which("node"),
                    reason="needs node and the CRD models (tools/helm/install.sh)")
@pytest.mark.parametrize("misspelt", [None, ("minReplicaCount", "minReplicaCuont"), ("scrapeTimeout", "scrapeTimout")])
def test_crd_check_refuses_a_misspelt_field(tmp_path, misspelt):
    values = {"workers.poolDefaults.autoscaling.type": "keda", "monitoring.serviceMonitor.enabled": True}
    docs = [d for d in render(set_values=values) if d["kind"] in ("ScaledObject", "ServiceMonitor")]
    text = yaml.safe_dump_all(docs)
    if misspelt:
        assert misspelt[0] in text
        text = text.replace(misspelt[0], misspelt[1])
    (tmp_path / "crs.yaml").write_text(text)
    proc = subprocess.run(["node", str(ROOT / "helm/scripts/validate_crds.mjs"), str(tmp_path / "crs.yaml")],
                          env={**os.environ, "CRD_MODELS_DIR": str(MODELS)}, capture_output=True, text=True)
    if misspelt:
        assert proc.returncode == 1 and f".{misspelt[1]}" in proc.stdout, proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout
