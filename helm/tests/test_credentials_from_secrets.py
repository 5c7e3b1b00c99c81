"""Connection URLs from keys of other Secrets (e.g. a CloudNativePG Secret's `uri`), per connection."""
import pytest

from conftest import CREDS, pod_spec, render, render_error, workloads

FROM = {"secrets.databaseUrlFrom": {"secretName": "pg-app", "key": "uri"},
        "secrets.brokerUrlFrom": {"secretName": "redis-operator", "key": "url"},
        "secrets.rateLimitRedisUrlFrom": {"secretName": "ratelimit-redis", "key": "url"}}
NO_URLS = {**CREDS, "secrets.databaseUrl": "", "secrets.brokerUrl": ""}


def refs(docs, variable):
    """{(workload, container): secretKeyRef} for every container that gets `variable`."""
    out = {}
    for w in workloads(docs):
        spec = pod_spec(w)
        for c in spec.get("initContainers", []) + spec["containers"]:
            for e in c.get("env", []):
                if e["name"] == variable:
                    out[(w["metadata"]["name"], c["name"])] = e["valueFrom"]["secretKeyRef"]
    return out


@pytest.fixture(scope="module")
def docs():
    return render(creds=False, set_values={**NO_URLS, **FROM})


def test_each_url_comes_from_its_own_secret_key(docs):
    database = refs(docs, "DATABASE_URL")
    assert ("rel-celery-stack-web", "web") in database and ("rel-celery-stack-migrate", "migrate") in database
    assert set(map(str, database.values())) == {str({"name": "pg-app", "key": "uri"})}
    broker = {**refs(docs, "CELERY_BROKER_URL"), **refs(docs, "CE_BROKER_URL")}
    assert ("rel-celery-stack-exporter", "celery-exporter") in broker and ("rel-celery-stack-flower", "flower") in broker
    assert set(map(str, broker.values())) == {str({"name": "redis-operator", "key": "url"})}
    assert refs(docs, "RATELIMIT_REDIS_URL") == {("rel-celery-stack-web", "web"): {"name": "ratelimit-redis", "key": "url"}}


def test_the_chart_secret_no_longer_holds_them(docs):
    for secret in docs.of("Secret"):
        assert not {"DATABASE_URL", "CELERY_BROKER_URL", "RATELIMIT_REDIS_URL"} & set(secret["data"])
    # The other keys still come from the chart's Secret.
    assert set(map(str, refs(docs, "DJANGO_SECRET_KEY").values())) <= {
        str({"name": "rel-celery-stack", "key": "DJANGO_SECRET_KEY"}),
        str({"name": "rel-celery-stack-migrate", "key": "DJANGO_SECRET_KEY"})}


def test_with_an_existing_secret_only_the_url_moves():
    docs = render(set_values={"secrets.existingSecret": "app-secrets",
                              "secrets.databaseUrlFrom": {"secretName": "pg-app", "key": "uri"}})
    assert {str(r) for r in refs(docs, "DATABASE_URL").values()} == {str({"name": "pg-app", "key": "uri"})}
    assert {r["name"] for r in refs(docs, "CELERY_BROKER_URL").values()} == {"app-secrets"}


def test_defaults_use_the_chart_secret(default_docs):
    assert {r["name"] for r in refs(default_docs, "DATABASE_URL").values()} <= {"rel-celery-stack", "rel-celery-stack-migrate"}
    assert not refs(default_docs, "RATELIMIT_REDIS_URL")


@pytest.mark.parametrize(("values", "message"), [
    ({"secrets.databaseUrlFrom": {"secretName": "pg-app"}}, "secrets.databaseUrlFrom.key is required"),
    ({"secrets.brokerUrlFrom": {"secretName": "Bad_Name", "key": "url"}}, "/secrets/brokerUrlFrom/secretName"),
    ({"secrets.rateLimitRedisUrlFrom": {"secretName": "x", "key": "a/b"}}, "/secrets/rateLimitRedisUrlFrom/key"),
])
def test_bad_references_are_refused_naming_the_value(values, message):
    assert message in render_error(set_values=values)


def test_the_url_is_still_required_without_a_reference():
    assert "secrets.databaseUrl is required" in render_error(creds=False, set_values={**NO_URLS, "secrets.brokerUrl": "redis://r:6379/0"})
