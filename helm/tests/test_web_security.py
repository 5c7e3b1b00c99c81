"""The web's security settings as the chart renders them: TLS behind the Ingress passes
Django's deploy checklist, /metrics stays off the public port, Redis has a maxmemory."""
import base64
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import pod_spec, render

APP = pathlib.Path(__file__).resolve().parents[2] / "services" / "app"
TLS = {
    "web.ingress.enabled": True,
    "web.ingress.hosts": [{"host": "app.example.com"}],
    "web.ingress.tls": [{"secretName": "app-tls", "hosts": ["app.example.com", "www.example.com"]}],
}


def web_container(docs):
    deployment = docs.get("Deployment", "rel-celery-stack-web")
    return next(c for c in pod_spec(deployment)["containers"] if c["name"] == "web")


def web_environment(docs) -> dict:
    """The web container's environment as Kubernetes would build it: the ConfigMap, then env
    (Secret references resolved from the rendered Secret, $(VAR) expanded)."""
    container = web_container(docs)
    environ = {}
    for source in container.get("envFrom", []):
        environ.update(docs.get("ConfigMap", source["configMapRef"]["name"])["data"])
    secret = docs.get("Secret", "rel-celery-stack")["data"]
    for entry in container.get("env", []):
        if "value" in entry:
            value = entry["value"]
            for name, known in environ.items():
                value = value.replace(f"$({name})", known)
            environ[entry["name"]] = value
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            key = entry["valueFrom"]["secretKeyRef"]["key"]
            environ[entry["name"]] = base64.b64decode(secret[key]).decode()
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            environ[entry["name"]] = "10.0.0.7"
    return environ


def test_tls_ingress_sets_proxy_ssl_hsts_and_csrf_origins():
    environ = web_environment(render(set_values=TLS))
    assert environ["DJANGO_SECURE_PROXY_SSL"] == "true"
    assert environ["DJANGO_SECURE_HSTS_SECONDS"] == "31536000"
    assert environ["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://app.example.com,https://www.example.com"


def test_without_tls_nothing_claims_https(default_docs):
    environ = web_environment(default_docs)
    assert "DJANGO_SECURE_PROXY_SSL" not in environ
    assert "DJANGO_SECURE_HSTS_SECONDS" not in environ


@pytest.mark.skipif(not shutil.which("uv"), reason="needs uv to run the app's environment")
def test_check_deploy_passes_with_the_rendered_tls_environment():
    """`manage.py check --deploy --fail-level WARNING` with exactly the env the chart gives the
    web pod behind a TLS Ingress: any warning (HSTS, SSL redirect, cookies...) fails."""
    environ = web_environment(render(set_values=TLS))
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "UV_CACHE_DIR") if name in os.environ}
    proc = subprocess.run(
        ["uv", "run", "--locked", "-q", "python", "manage.py", "check", "--deploy",
         "--fail-level", "WARNING"],
        cwd=APP, env={**keep, **environ}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout, proc.stdout


def test_metrics_have_their_own_port_and_the_ingress_never_routes_it():
    docs = render(set_values={**TLS, "monitoring.serviceMonitor.enabled": True})
    ports = {p["name"]: p["containerPort"] for p in web_container(docs)["ports"]}
    assert ports == {"http": 8000, "metrics": 9100}
    service_ports = {p["name"] for p in docs.get("Service", "rel-celery-stack-web")["spec"]["ports"]}
    assert service_ports == {"http", "metrics"}
    monitor = docs.get("ServiceMonitor", "rel-celery-stack-web")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    ingress = docs.get("Ingress", "rel-celery-stack-web")
    backends = {p["backend"]["service"]["port"]["name"]
                for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert backends == {"http"}
    assert web_environment(docs)["METRICS_PORT"] == "9100"


def test_admin_path_can_be_turned_off():
    environ = web_environment(render(set_values={"web.adminPath": ""}))
    assert environ["DJANGO_ADMIN_PATH"] == ""


def test_rate_limits_come_from_values():
    environ = web_environment(render(set_values={"config.rateLimits.enqueue": "5/10m"}))
    assert environ["RATELIMIT_ENQUEUE"] == "5/10m"
    assert environ["RATELIMIT_TRUSTED_PROXIES"] == "1"


def test_in_chart_redis_has_maxmemory_below_its_limit():
    docs = render(set_values={"redis.enabled": True, "redis.password": "pw", "secrets.brokerUrl": ""})
    redis = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
                 and d["metadata"]["name"].endswith("-redis"))
    command = " ".join(pod_spec(redis)["containers"][0]["command"])
    assert "--maxmemory 200mb --maxmemory-policy noeviction" in command
    assert pod_spec(redis)["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
