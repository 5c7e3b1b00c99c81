"""Authentication for the KEDA Prometheus trigger: authModes and a TriggerAuthentication."""
import pytest

from conftest import render, render_error

KEDA = {"workers.pools.high.autoscaling.type": "keda"}


def auth_for(prometheus):
    docs = render(set_values={**KEDA, "workers.pools.high.autoscaling.keda.prometheus": prometheus})
    so = docs.get("ScaledObject", "rel-celery-stack-worker-high")
    auths = {d["metadata"]["name"]: d for d in docs.of("TriggerAuthentication")}
    return so["spec"]["triggers"][0], auths


@pytest.mark.parametrize(("mode", "params"), [
    ("bearer", ["bearerToken"]),
    ("basic", ["username", "password"]),
    ("tls", ["ca", "cert", "key"]),
    ("tls,bearer", ["ca", "cert", "key", "bearerToken"]),
])
def test_auth_modes_render_a_trigger_authentication(mode, params):
    trigger, auths = auth_for({"authModes": mode, "authSecret": {"name": "prom-auth"}})
    assert trigger["metadata"]["authModes"] == mode
    assert trigger["authenticationRef"] == {"name": "rel-celery-stack-worker-high"}
    refs = auths["rel-celery-stack-worker-high"]["spec"]["secretTargetRef"]
    assert refs == [{"parameter": p, "name": "prom-auth", "key": p} for p in params]


def test_secret_keys_can_be_mapped():
    _, auths = auth_for({"authModes": "basic", "authSecret": {"name": "prom", "keys": {"username": "user"}}})
    refs = auths["rel-celery-stack-worker-high"]["spec"]["secretTargetRef"]
    assert [(r["parameter"], r["key"]) for r in refs] == [("username", "user"), ("password", "password")]


def test_no_auth_by_default():
    trigger, auths = auth_for({})
    assert "authModes" not in trigger["metadata"] and "authenticationRef" not in trigger
    assert not auths


@pytest.mark.parametrize(("prometheus", "message"), [
    ({"authModes": "bearer"}, "workers.pools.high.autoscaling.keda.prometheus.authSecret.name is required"),
    ({"authModes": "oauth", "authSecret": {"name": "x"}}, "/workers/pools/high/autoscaling/keda/prometheus/authModes"),
    ({"authModes": "bearer", "authSecret": {"name": "x", "keys": {"token": "t"}}},
     "/workers/pools/high/autoscaling/keda/prometheus/authSecret/keys"),
])
def test_bad_auth_values_are_refused_naming_the_value(prometheus, message):
    assert message in render_error(set_values={**KEDA, "workers.pools.high.autoscaling.keda.prometheus": prometheus})
