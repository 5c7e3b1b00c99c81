"""Monitoring objects come from monitoring/ through the chart's files/ copy, never drifting."""
import json
import subprocess

import yaml

from conftest import CHART, ROOT, render

RULE_FILES = sorted((CHART / "files/prometheus/rules").glob("*.yml"))
# Rendered from workers.pools, not copied: for the default pools it must equal what
# tools/gen_pools.py writes for pools.yaml.
POOL_THRESHOLDS = ROOT / "monitoring/prometheus/rules/celery-stack-pools.yml"
DASHBOARDS = sorted((CHART / "files/grafana/dashboards").glob("*.json"))
MONITORING = {"monitoring.serviceMonitor.enabled": True, "monitoring.prometheusRule.enabled": True,
              "monitoring.grafanaDashboards.enabled": True}


def test_chart_copies_match_monitoring_sources():
    proc = subprocess.run([str(ROOT / "helm/scripts/sync_monitoring.sh"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_monitoring_off_by_default(default_docs):
    assert not default_docs.of("ServiceMonitor") and not default_docs.of("PrometheusRule")
    assert not [cm for cm in default_docs.of("ConfigMap") if "grafana_dashboard" in cm["metadata"]["labels"]]


def test_service_monitors_scrape_web_and_both_exporters():
    docs = render(set_values=MONITORING)
    ports = {sm["metadata"]["name"]: [e["port"] for e in sm["spec"]["endpoints"]] for sm in docs.of("ServiceMonitor")}
    assert ports == {"rel-celery-stack-web": ["metrics"], "rel-celery-stack-exporter": ["exporter", "queue-metrics"]}
    svc = docs.get("Service", "rel-celery-stack-exporter")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"exporter": 9808, "queue-metrics": 9809}


def test_one_prometheusrule_per_rules_file():
    docs = render(set_values=MONITORING)
    rules = docs.of("PrometheusRule")
    with_groups = [f for f in RULE_FILES if (yaml.safe_load(f.read_text()) or {}).get("groups")]
    with_groups = sorted([*with_groups, POOL_THRESHOLDS], key=lambda f: f.name)
    assert len(rules) == len(with_groups)
    for f, rule in zip(with_groups, sorted(rules, key=lambda r: r["metadata"]["name"]), strict=True):
        expected = yaml.safe_load(f.read_text())["groups"]
        if f == POOL_THRESHOLDS:  # the chart's thresholds also name the release's namespace
            for r in (r for g in expected for r in g["rules"]):
                r["labels"] = {"namespace": "demo", **r["labels"]}
        assert rule["spec"]["groups"] == expected


def series_of(rule):
    return rule["record"], tuple(sorted(rule["labels"].items()))


def test_two_releases_thresholds_stay_apart():
    """The alerts match thresholds on (namespace, queue_name): each release's carry its namespace,
    so two releases with the same pools on one Prometheus neither clash nor judge each other."""
    def thresholds(namespace):
        docs = render(set_values=MONITORING, namespace=namespace)
        [rule] = [r for r in docs.of("PrometheusRule") if r["metadata"]["name"].endswith("-celery-stack-pools")]
        return [r for g in rule["spec"]["groups"] for r in g["rules"]]
    a, b = thresholds("team-a"), thresholds("team-b")
    assert {r["labels"]["namespace"] for r in a} == {"team-a"}
    assert {r["labels"]["namespace"] for r in b} == {"team-b"}
    assert not {series_of(r) for r in a} & {series_of(r) for r in b}
    alerts = yaml.safe_load((CHART / "files/prometheus/rules/celery-stack-alerts.yml").read_text())
    for rule in (r for g in alerts["groups"] for r in g["rules"]):
        if "alert_threshold" in rule["expr"]:
            assert "on (queue_name)" not in rule["expr"] and "on (namespace, queue_name)" in rule["expr"], rule["alert"]


def test_one_dashboard_configmap_per_dashboard_with_sidecar_label():
    docs = render(set_values=MONITORING)
    cms = [cm for cm in docs.of("ConfigMap") if cm["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(cms) == len(DASHBOARDS)
    for cm in cms:
        [(key, text)] = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "files/grafana/dashboards" / key).read_text())


def test_templates_with_sample_files(tmp_path):
    """Exercise the PrometheusRule and dashboard templates even before monitoring/ has files."""
    import shutil

    from conftest import CREDS, HELM

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    rules = {"groups": [{"name": "sample", "rules": [{
        "alert": "Sample", "expr": "up == 0", "annotations": {"summary": "{{ $labels.job }} is down"}}]}]}
    (chart / "files/prometheus/rules/Sample_Rules.yml").write_text(yaml.safe_dump(rules))
    dashboard = {"uid": "sample", "title": "Sample", "panels": [{"id": 1, "expr": "{{ not a template }}"}]}
    (chart / "files/grafana/dashboards/Celery_Sample.json").write_text(json.dumps(dashboard))
    args = [HELM, "template", "rel", str(chart), "-n", "demo",
            "--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.grafanaDashboards.enabled=true",
            "--set", "monitoring.grafanaDashboards.namespace=grafana"]
    for k, v in CREDS.items():
        args += ["--set", f"{k}={v}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule" and d["metadata"]["name"].endswith("sample-rules")]
    # Parsed, not templated: alert annotations keep their Go-template placeholders.
    assert rule["spec"]["groups"] == rules["groups"]
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rel-celery-stack-dashboard-celery-sample"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "grafana"
    assert json.loads(cm["data"]["Celery_Sample.json"]) == dashboard
