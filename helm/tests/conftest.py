"""Render the chart with `helm template` and index the output.

HELM: path to helm 3 (default: build/tools/helm/bin/helm from tools/helm/install.sh).
"""
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "celery-stack"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
ENV_VALUES = sorted((ROOT / "k8s").glob("values-*.yaml"))
HELM = os.environ.get("HELM") or str(ROOT / "build/tools/helm/bin/helm")
if not pathlib.Path(HELM).exists():
    HELM = shutil.which("helm") or HELM

# The chart requires the two external URLs unless told otherwise, and under `helm template`
# the keys it would otherwise generate.
CREDS = {"secrets.databaseUrl": "postgres://app:s3cr3t-db@db:5432/app",
         "secrets.brokerUrl": "redis://:s3cr3t-broker@redis:6379/0",
         "secrets.djangoSecretKey": "s3cr3t-django-key-" + "k9Xq2vLm7RtY4wZp8Hn3Bc6Jf1Ds5Ga0", "secrets.flowerBasicAuth": "admin:s3cr3t-flower"}


class Rendered(list):
    """The rendered documents, with lookups by kind and name."""

    def of(self, kind):
        return [d for d in self if d["kind"] == kind]

    def get(self, kind, name):
        found = [d for d in self if d["kind"] == kind and d["metadata"]["name"] == name]
        assert found, f"no {kind}/{name}; have {[(d['kind'], d['metadata']['name']) for d in self]}"
        return found[0]

    def names(self, kind):
        return sorted(d["metadata"]["name"] for d in self.of(kind))


def helm_template(*values_files, set_values=None, creds=True, release="rel", namespace="demo"):
    args = [HELM, "template", release, str(CHART), "--namespace", namespace]
    for f in values_files:
        args += ["-f", str(f)]
    values = dict(CREDS) if creds else {}
    values.update(set_values or {})
    for key, value in values.items():
        if isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            args += ["--set-json", f"{key}={json.dumps(value)}"]
    return subprocess.run(args, capture_output=True, text=True)


_cache = {}


def render(*values_files, **kw):
    """Rendered documents (cached per arguments; callers must not mutate them)."""
    key = json.dumps([[str(f) for f in values_files], kw], sort_keys=True)
    if key not in _cache:
        proc = helm_template(*values_files, **kw)
        assert proc.returncode == 0, proc.stderr
        _cache[key] = Rendered(d for d in yaml.safe_load_all(proc.stdout) if d)
    return _cache[key]


def render_error(*values_files, **kw):
    proc = helm_template(*values_files, **kw)
    assert proc.returncode != 0, "expected helm template to fail"
    return proc.stderr


def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "Pod")]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="session")
def default_docs():
    return render()
