"""Amazon SQS as the broker (broker.type sqs, issue #15): no Redis, CELERY_BROKER_URL=sqs:// and
SQS_* on every app process, IRSA on the ServiceAccounts, KEDA's aws-sqs-queue trigger on the
queues the app itself uses, no Flower or exporter, the broker egress on 443, and refusals."""
import base64
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import CHART, env_of, pod_spec, render, render_error, workloads

APP = pathlib.Path(__file__).resolve().parents[2] / "services" / "app"
SQS_VALUES = CHART / "ci" / "sqs-values.yaml"
REGION, ACCOUNT, PREFIX = "eu-west-1", "123456789012", "prod-celery-"
# On top of conftest's CREDS, whose brokerUrl (and flowerBasicAuth, without Flower) SQS ignores.
SQS = {"broker.type": "sqs", "broker.sqs.region": REGION, "broker.sqs.accountId": ACCOUNT,
       "secrets.rateLimitRedisUrl": "redis://:pw@ratelimit:6379/0"}
KEDA = {"workers.poolDefaults.autoscaling.type": "keda",
        "workers.poolDefaults.autoscaling.keda.trigger": "aws-sqs-queue"}


def sqs_docs():
    return render(SQS_VALUES, creds=False)


def app_containers(docs):
    """(workload name, container) of every container running the app: web, workers, beat,
    the migrations Job, the wait-for-migrations init containers and the helm test pod's."""
    for workload in workloads(docs):
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container.get("envFrom") or "CELERY_BROKER_URL" in env_of(container):
                yield workload["metadata"]["name"], container


def environment(docs, container):
    """A container's environment as Kubernetes builds it: its ConfigMaps, then env (Secret
    references resolved from the rendered Secret)."""
    environ = {}
    for source in container.get("envFrom", []):
        environ.update(docs.get("ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            environ[entry["name"]] = base64.b64decode(docs.get("Secret", ref["name"])["data"][ref["key"]]).decode()
    return environ


@pytest.mark.parametrize("values", [{}, {"secrets.brokerUrl": "redis://:pw@old-redis:6379/0"}],
                         ids=["no broker URL", "a leftover broker URL, ignored"])
def test_no_redis_and_no_broker_url_in_the_secret(values):
    docs = render(SQS_VALUES, creds=False, set_values=values)
    assert not [d for d in docs if "redis" in d["metadata"]["name"]]
    for secret in docs.of("Secret"):
        assert "CELERY_BROKER_URL" not in secret["data"]
        assert "REDIS_PASSWORD" not in secret["data"]


def test_every_app_process_gets_sqs_and_its_settings():
    docs = sqs_docs()
    seen = set()
    for workload, container in app_containers(docs):
        environ = environment(docs, container)
        assert environ["CELERY_BROKER_URL"] == "sqs://", (workload, container["name"])
        assert (environ["SQS_REGION"], environ["SQS_ACCOUNT_ID"], environ["SQS_QUEUE_PREFIX"]) == (
            REGION, ACCOUNT, PREFIX), (workload, container["name"])
        seen.add(workload)
    assert {"rel-celery-stack-web", "rel-celery-stack-beat", "rel-celery-stack-worker-default",
            "rel-celery-stack-worker-high", "rel-celery-stack-migrate"} <= seen


def test_images_are_the_ones_set_for_the_sqs_build():
    """The default images have no boto3: ci/sqs-values.yaml points web, workers and beat at an
    APP_SQS=1 build by tag."""
    docs = sqs_docs()
    for name in ("web", "beat", "worker-default", "worker-high"):
        for container in pod_spec(docs.get("Deployment", f"rel-celery-stack-{name}"))["containers"]:
            assert container["image"].endswith(":1.4.0-sqs"), (name, container["image"])


def test_irsa_annotations_on_the_service_accounts():
    docs = sqs_docs()
    app_role = "arn:aws:iam::123456789012:role/celery-stack-app"
    sa = docs.get("ServiceAccount", "rel-celery-stack")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == app_role
    # The migrations hook runs before that ServiceAccount exists: its copy has the same role.
    hook = docs.get("ServiceAccount", "rel-celery-stack-migrate")
    assert hook["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == app_role
    high = docs.get("ServiceAccount", "rel-celery-stack-worker-high")
    assert high["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/celery-stack-high")
    assert pod_spec(docs.get("Deployment", "rel-celery-stack-worker-high"))["serviceAccountName"] == "rel-celery-stack-worker-high"
    for name in ("web", "beat", "worker-default"):
        assert pod_spec(docs.get("Deployment", f"rel-celery-stack-{name}"))["serviceAccountName"] == "rel-celery-stack"


def test_each_pool_scales_on_its_queues_with_the_aws_sqs_queue_trigger():
    docs = sqs_docs()
    for pool, target in (("default", "2"), ("high", "4")):  # targetPerReplica 0 = concurrency
        name = f"rel-celery-stack-worker-{pool}"
        spec = docs.get("ScaledObject", name)["spec"]
        [trigger] = spec["triggers"]
        assert trigger["type"] == "aws-sqs-queue" and trigger["metricType"] == "AverageValue"
        meta = trigger["metadata"]
        assert meta["queueURL"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{PREFIX}{pool}"
        assert meta["awsRegion"] == REGION
        assert meta["queueLength"] == target
        assert meta["scaleOnInFlight"] == "true"
        assert trigger["authenticationRef"] == {"name": name}
        assert "scalingModifiers" not in spec["advanced"]  # one queue: nothing to sum


def test_trigger_authentication_uses_aws_pod_identity():
    docs = sqs_docs()
    # default pool: KEDA's own role; high: the role of the pool's ServiceAccount.
    assert docs.get("TriggerAuthentication", "rel-celery-stack-worker-default")["spec"] == {
        "podIdentity": {"provider": "aws", "identityOwner": "keda"}}
    assert docs.get("TriggerAuthentication", "rel-celery-stack-worker-high")["spec"] == {
        "podIdentity": {"provider": "aws", "identityOwner": "workload"}}
    role = "arn:aws:iam::123456789012:role/keda-sqs-reader"
    docs = render(set_values={**SQS, **KEDA, "workers.poolDefaults.autoscaling.keda.sqs.roleArn": role})
    assert docs.get("TriggerAuthentication", "rel-celery-stack-worker-default")["spec"] == {
        "podIdentity": {"provider": "aws", "roleArn": role}}


def test_a_pool_of_several_queues_sums_them():
    docs = render(set_values={**SQS, **KEDA, "workers.pools.default.queues": ["default", "bulk"]})
    spec = docs.get("ScaledObject", "rel-celery-stack-worker-default")["spec"]
    urls = [t["metadata"]["queueURL"].rsplit("/", 1)[1] for t in spec["triggers"]]
    assert urls == ["celery-stack-default", "celery-stack-bulk"]  # the default prefix
    assert [t["name"] for t in spec["triggers"]] == ["q0", "q1"]
    assert spec["advanced"]["scalingModifiers"] == {
        "formula": "q0 + q1", "target": "2", "activationTarget": "0", "metricType": "AverageValue"}


@pytest.mark.skipif(not shutil.which("uv"), reason="needs uv to run the app's environment")
def test_keda_watches_the_queues_the_app_consumes():
    """The worker's rendered environment, through the app's own settings (config/sqs.py),
    gives the predefined queue URLs the pool's ScaledObject reads."""
    docs = sqs_docs()
    for pool in ("default", "high"):
        name = f"rel-celery-stack-worker-{pool}"
        container = next(c for c in pod_spec(docs.get("Deployment", name))["containers"] if c["name"] == "worker")
        keep = {k: os.environ[k] for k in ("PATH", "HOME", "UV_CACHE_DIR") if k in os.environ}
        proc = subprocess.run(
            ["uv", "run", "--locked", "-q", "python", "-c",
             "import os; from django.conf import settings; "
             "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['predefined_queues']"
             "[os.environ['SQS_QUEUE_PREFIX'] + os.environ['CELERY_WORKER_QUEUES']]['url'])"],
            cwd=APP, env={**keep, **environment(docs, container), "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [trigger] = docs.get("ScaledObject", name)["spec"]["triggers"]
        assert proc.stdout.strip() == trigger["metadata"]["queueURL"]


def test_hpa_fallback_renders_a_cpu_hpa_per_pool():
    docs = render(set_values={**SQS, "workers.poolDefaults.autoscaling.type": "hpa"})
    assert not docs.of("ScaledObject") and not docs.of("TriggerAuthentication")
    for pool in ("default", "high"):
        hpa = docs.get("HorizontalPodAutoscaler", f"rel-celery-stack-worker-{pool}")["spec"]
        assert hpa["metrics"][0]["resource"]["name"] == "cpu"
        assert hpa["scaleTargetRef"]["name"] == f"rel-celery-stack-worker-{pool}"


def test_flower_and_exporter_are_off_by_default_on_sqs_only(default_docs):
    docs = sqs_docs()
    for component in ("flower", "exporter"):
        assert not [d for d in docs if d["metadata"]["name"].startswith(f"rel-celery-stack-{component}")]
        assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        # On Redis (the default) both run.
        assert default_docs.get("Deployment", f"rel-celery-stack-{component}")
    # No Flower, so no generated Flower password either.
    assert "FLOWER_BASIC_AUTH" not in docs.get("Secret", "rel-celery-stack")["data"]
    # Turned off on Redis, they stay off.
    off = render(set_values={"flower.enabled": False, "exporter.enabled": False})
    assert not [d for d in off.of("Deployment") if d["metadata"]["name"].endswith(("-flower", "-exporter"))]


@pytest.mark.parametrize("component, reason", [
    ("flower", "no task events and no remote control"),
    ("exporter", "the exporter image has no boto3"),
])
def test_turning_flower_or_the_exporter_on_with_sqs_fails(component, reason):
    error = render_error(set_values={**SQS, f"{component}.enabled": True})
    assert f"{component}.enabled" in error and reason in error


def test_broker_egress_is_https_on_sqs():
    on = {"networkPolicy.enabled": True, "networkPolicy.egress.enabled": True,
          "networkPolicy.egress.database.to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}]}
    aws = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    docs = render(set_values={**SQS, **on, "networkPolicy.egress.broker.to": aws})
    for component in ("web", "worker", "beat"):
        rules = docs.get("NetworkPolicy", f"rel-celery-stack-{component}-egress")["spec"]["egress"]
        broker = [r for r in rules if r["to"] == aws]
        assert [r["ports"] for r in broker] == [[{"port": 443, "protocol": "TCP"}]], component
        assert not [r for r in rules if r["ports"][0]["port"] == 6379 and r["to"] == aws]
    # No policies for pods that do not run.
    names = docs.names("NetworkPolicy")
    assert "rel-celery-stack-flower-egress" not in names and "rel-celery-stack-exporter-egress" not in names
    # Redis keeps 6379; an explicit list wins on either broker.
    redis = render(set_values={**on, "networkPolicy.egress.broker.to": aws})
    rules = redis.get("NetworkPolicy", "rel-celery-stack-web-egress")["spec"]["egress"]
    assert [r["ports"] for r in rules if r["to"] == aws] == [[{"port": 6379, "protocol": "TCP"}]]
    endpoint = render(set_values={**SQS, **on, "networkPolicy.egress.broker.to": aws,
                                  "networkPolicy.egress.broker.ports": [8443]})
    rules = endpoint.get("NetworkPolicy", "rel-celery-stack-web-egress")["spec"]["egress"]
    assert [r["ports"] for r in rules if r["to"] == aws] == [[{"port": 8443, "protocol": "TCP"}]]


@pytest.mark.parametrize("values, message", [
    # values.schema.json
    ({"broker.sqs.region": "Europe"}, "at '/broker/sqs/region': 'Europe' does not match pattern"),
    ({"broker.sqs.region": "eu-west"}, "at '/broker/sqs/region': 'eu-west' does not match pattern"),
    ({"broker.sqs.accountId": "12345"}, "at '/broker/sqs/accountId': '12345' does not match pattern"),
    ({"broker.sqs.accountId": "12345678901a"}, "at '/broker/sqs/accountId'"),
    ({"broker.sqs.queuePrefix": "prod.celery"}, "at '/broker/sqs/queuePrefix'"),
    ({"broker.type": "kafka"}, "at '/broker/type': value must be one of 'url', 'sqs'"),
    ({**KEDA, "workers.poolDefaults.autoscaling.keda.sqs.roleArn": "keda-role"},
     "at '/workers/poolDefaults/autoscaling/keda/sqs/roleArn'"),
    # templates/validate.yaml
    ({"broker.sqs.region": ""}, "broker.sqs.region is required with broker.type sqs"),
    ({"broker.sqs.accountId": ""}, "broker.sqs.accountId is required with broker.type sqs"),
    ({"broker.sqs.queuePrefix": "p" * 75}, "must be at most 80 letters, digits, - or _"),
    ({"workers.pools.high.queues": ["high.v2"]}, "the SQS queue name celery-stack-high.v2"),
    ({"secrets.brokerUrlFrom": {"secretName": "redis", "key": "url"}}, "the chart sets CELERY_BROKER_URL=sqs:// itself"),
    ({"redis.enabled": True, "redis.password": "pw"}, "the chart sets CELERY_BROKER_URL=sqs:// itself"),
    ({"secrets.rateLimitRedisUrl": ""}, "secrets.rateLimitRedisUrl is required with broker.type sqs"),
    ({"config.apiMaxCountdown": 3600}, "may not exceed 900 on SQS"),
    ({**KEDA, "workers.poolDefaults.autoscaling.keda.trigger": "redis"}, "use trigger aws-sqs-queue"),
    ({**KEDA, "workers.poolDefaults.autoscaling.keda.trigger": "prometheus"},
     "its default query reads celery-stack-metrics, which does not run on SQS"),
    ({**KEDA, "workers.poolDefaults.autoscaling.keda.sqs.identityOwner": "workload",
      "workers.poolDefaults.autoscaling.keda.sqs.roleArn": "arn:aws:iam::123456789012:role/k"},
     "roleArn and identityOwner workload exclude each other"),
])
def test_bad_sqs_values_fail_with_a_clear_error(values, message):
    assert message in render_error(set_values={**SQS, **values})


def test_the_sqs_trigger_needs_the_sqs_broker():
    assert "aws-sqs-queue needs broker.type sqs" in render_error(set_values=KEDA)


def test_prometheus_trigger_on_sqs_with_your_own_query():
    """The documented alternative: Prometheus over your own SQS metrics (e.g. CloudWatch's)."""
    query = 'sum(aws_sqs_approximate_number_of_messages_visible_average{queue_name="prod-celery-high"})'
    docs = render(set_values={**SQS, "workers.pools.high.autoscaling.type": "keda",
                              "workers.pools.high.autoscaling.keda.prometheus.query": query})
    [trigger] = docs.get("ScaledObject", "rel-celery-stack-worker-high")["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["query"] == query


def test_existing_secret_needs_no_broker_key_on_sqs():
    docs = render(set_values={**SQS, "secrets.existingSecret": "app-secrets",
                              "secrets.rateLimitRedisUrlFrom": {"secretName": "app-secrets", "key": "RATELIMIT_REDIS_URL"}},
                  creds=False)
    assert not docs.of("Secret")
    web = next(c for c in pod_spec(docs.get("Deployment", "rel-celery-stack-web"))["containers"] if c["name"] == "web")
    env = env_of(web)
    assert env["CELERY_BROKER_URL"] == {"name": "CELERY_BROKER_URL", "value": "sqs://"}
    assert env["RATELIMIT_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "app-secrets", "key": "RATELIMIT_REDIS_URL"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "app-secrets", "key": "DATABASE_URL"}
