"""Egress NetworkPolicies: DNS, the database, the broker, the rate-limit Redis and SMTP only,
each component what it really uses."""
import pytest

from conftest import render, render_error

DB = [{"ipBlock": {"cidr": "10.0.5.0/24"}}]
BROKER = [{"ipBlock": {"cidr": "10.0.6.0/24"}}]
SMTP = [{"ipBlock": {"cidr": "203.0.113.25/32"}}]
ON = {"networkPolicy.enabled": True, "networkPolicy.egress.enabled": True,
      "networkPolicy.egress.database.to": DB, "networkPolicy.egress.broker.to": BROKER,
      "networkPolicy.egress.smtp.to": SMTP}


def egress(docs, component):
    policy = docs.get("NetworkPolicy", f"rel-celery-stack-{component}-egress")
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    return policy["spec"]["egress"]


def peers(rules):
    """{first port: peers} of the egress rules."""
    return {r["ports"][0]["port"]: r["to"] for r in rules}


def test_off_by_default(default_docs):
    assert not [d for d in default_docs.of("NetworkPolicy") if "egress" in d["metadata"]["name"]]
    docs = render(set_values={"networkPolicy.enabled": True})
    assert all(d["spec"]["policyTypes"] == ["Ingress"] for d in docs.of("NetworkPolicy"))


def test_each_component_reaches_only_dns_and_what_it_uses():
    docs = render(set_values=ON)
    deny = docs.get("NetworkPolicy", "rel-celery-stack-default-deny-egress")["spec"]
    assert deny["policyTypes"] == ["Egress"] and deny["egress"] == []
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "celery-stack",
                                                  "app.kubernetes.io/instance": "rel"}
    expected = {"web": {53: "dns", 5432: DB, 6379: BROKER}, "worker": {53: "dns", 5432: DB, 6379: BROKER, 587: SMTP},
                "beat": {53: "dns", 5432: DB, 6379: BROKER}, "flower": {53: "dns", 6379: BROKER},
                # celery-stack-metrics reads the outbox and dead letters (databaseGauges).
                "exporter": {53: "dns", 5432: DB, 6379: BROKER}, "migrate": {53: "dns", 5432: DB}}
    for component, want in expected.items():
        got = peers(egress(docs, component))
        assert set(got) == set(want), component
        for port, to in want.items():
            if to != "dns":
                assert got[port] == to, (component, port)
    dns = egress(docs, "web")[0]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # The helm test pod calls the web Service.
    test = egress(docs, "test")[-1]
    assert test["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert test["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"


def test_the_exporter_reaches_the_database_only_for_its_gauges():
    docs = render(set_values={**ON, "exporter.queueMetrics.databaseGauges": False})
    assert set(peers(egress(docs, "exporter"))) == {53, 6379}


def test_ports_rate_limit_redis_and_extra_rules_are_configurable():
    extra = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443}]}
    docs = render(set_values={**ON, "networkPolicy.egress.database.ports": [6432],
                              "networkPolicy.egress.rateLimitRedis.to": [{"ipBlock": {"cidr": "10.0.7.0/24"}}],
                              "networkPolicy.egress.rateLimitRedis.ports": [6380],
                              "networkPolicy.egress.extra": {"worker": [extra]}})
    web = peers(egress(docs, "web"))
    assert web[6432] == DB and web[6380] == [{"ipBlock": {"cidr": "10.0.7.0/24"}}]
    assert 6380 not in peers(egress(docs, "worker"))
    assert egress(docs, "worker")[-1] == extra


def test_in_chart_redis_and_postgres_are_selected_by_label():
    docs = render(set_values={"networkPolicy.enabled": True, "networkPolicy.egress.enabled": True,
                              "redis.enabled": True, "postgresql.enabled": True,
                              "secrets.databaseUrl": "", "secrets.brokerUrl": "",
                              "redis.password": "pw", "postgresql.password": "pw"})
    worker = peers(egress(docs, "worker"))
    assert worker[5432][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgresql"
    assert worker[6379][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert 587 not in worker  # no SMTP peers: nothing opened


@pytest.mark.parametrize(("values", "message"), [
    ({"networkPolicy.egress.enabled": True}, "networkPolicy.egress.enabled needs networkPolicy.enabled"),
    ({**ON, "networkPolicy.egress.database.to": []}, "networkPolicy.egress.database.to is empty"),
    ({**ON, "networkPolicy.egress.broker.to": []}, "networkPolicy.egress.broker.to is empty"),
    ({**ON, "networkPolicy.egress.smtp.ports": [70000]}, "/networkPolicy/egress/smtp/ports/0"),
    ({**ON, "networkPolicy.egress.extra": {"workers": []}}, "/networkPolicy/egress/extra"),
])
def test_bad_egress_values_are_refused_naming_the_value(values, message):
    assert message in render_error(set_values=values)
