"""NOTES.txt renders (helm template skips it, so render it through a wrapper)."""
import shutil
import subprocess

import yaml

from conftest import CHART, CREDS, HELM

WRAPPER = """apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}
"""


def render_notes(tmp_path, *args):
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((chart / "templates/NOTES.txt").read_text())
    (chart / "templates/NOTES.txt").unlink()
    (chart / "templates/zz-notes.yaml").write_text(WRAPPER)
    proc = subprocess.run([HELM, "template", "rel", str(chart), "-n", "demo", "--show-only",
                           "templates/zz-notes.yaml", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def test_notes_defaults(tmp_path):
    args = [a for k, v in CREDS.items() for a in ("--set", f"{k}={v}")]
    notes = render_notes(tmp_path, *args)
    assert "default: queues=default concurrency=2 limits=300/360s grace=390s 1 fixed replica(s)" in notes
    assert "helm test rel -n demo --logs" in notes


def test_notes_keda(tmp_path):
    notes = render_notes(tmp_path, "-f", str(CHART / "ci" / "keda-values.yaml"))
    assert "KEDA 0..20 replicas, 2 tasks per replica (prometheus trigger)" in notes


def test_notes_sqs_list_the_queues_to_create(tmp_path):
    notes = render_notes(tmp_path, "-f", str(CHART / "ci" / "sqs-values.yaml"))
    assert "https://sqs.eu-west-1.amazonaws.com/123456789012/prod-celery-high  VisibilityTimeout > 45" in notes
    assert "https://sqs.eu-west-1.amazonaws.com/123456789012/prod-celery-default  VisibilityTimeout > 360" in notes
    assert "KEDA 1..10 replicas, 4 tasks per replica (aws-sqs-queue trigger)" in notes
    assert "Flower" not in notes
