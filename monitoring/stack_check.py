#!/usr/bin/env python3
"""Prove the dashboards and rules against a RUNNING celery-stack (Grafana cannot run here).

Starts a real Prometheus (Debian's `prometheus` package) on a free loopback port with
monitoring/prometheus/rules/, scraping the stack's published ports (celery-exporter :9808,
celery-stack-metrics :9809) and web's /metrics, which is not published (:9100 inside the stack:
relayed through `compose exec web`); drives load through the web API, with a token made by
`manage.py api_token create`, into both queues (add/mul on
`high`, xsum/long_job/rename_widget on `default`, one in five rename_widget calls fails on
purpose, plus some page and status reads); then, with the load still running, evaluates EVERY
dashboard panel and variable query (check_dashboards.py) and requires data from each; and checks
that every recording/alert rule evaluated without error. Prometheus is stopped at the end.

  python3 monitoring/stack_check.py [--env-file .env] [--broker redis|rabbitmq] [--seconds 150]

Ports come from the env file (WEB_PORT, EXPORTER_PORT, QUEUE_METRICS_PORT; defaults 8000, 9808,
9809) or --web/--exporter/--queue-metrics URLs. With --broker rabbitmq the Redis-only panel
(oldest message age) may be empty. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # check_dashboards; testsupport/ at the repository root
import check_dashboards  # noqa: E402

from testsupport import free_port, read_env_file  # noqa: E402

TOKEN: list[str] = []  # the API's bearer token, made by main() with manage.py api_token


def auth_headers() -> dict:
    return {"Authorization": f"Bearer {TOKEN[0]}"} if TOKEN else {}


def compose_exec(env_file: Path, broker: str, *argv: str, timeout: float = 120) -> str:
    """Run a command in the stack's web container (tools/compose.sh exec -T web ...)."""
    env = {**os.environ, "ENV_FILE": str(env_file), "COMPOSE_SH_QUIET": "1"}
    if broker == "rabbitmq":
        env["BROKER"] = "rabbitmq"
    proc = subprocess.run([str(HERE.parent / "tools" / "compose.sh"), "exec", "-T", "web", *argv],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"compose exec web {' '.join(argv)}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


class WebMetricsRelay(threading.Thread):
    """web serves /metrics on :9100 inside the stack only (not published); this loopback server
    answers each scrape with the latest page a `compose exec web` read there. The reads run in
    a loop of their own: one can take longer than Prometheus's 5 s scrape timeout on a busy
    machine, and a scrape that waited for it would time out and leave the web panels empty."""

    def __init__(self, env_file: Path, broker: str):
        super().__init__(daemon=True)
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fetch = ("import sys, urllib.request; "
                 "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=10).read().decode())")
        latest = {"data": b"no read of web's /metrics yet", "status": 502}

        def read_forever():
            while True:
                try:
                    latest.update(data=compose_exec(env_file, broker, "python", "-c", fetch, timeout=30).encode(),
                                  status=200)
                except Exception as exc:  # the scrape shows the error
                    latest.update(data=str(exc).encode(), status=502)
                time.sleep(2)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                data, status = latest["data"], latest["status"]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):
                pass

        self.reader = threading.Thread(target=read_forever, daemon=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"

    def run(self):
        self.reader.start()
        self.server.serve_forever()


def get(url, timeout=10):
    req = urllib.request.Request(url, headers=auth_headers() if "/api/" in url else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **auth_headers()})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


class Load(threading.Thread):
    def __init__(self, web: str):
        super().__init__(daemon=True)
        self.web = web.rstrip("/")
        self.stop = threading.Event()
        self.sent = 0
        self.errors = 0

    def run(self):
        i = 0
        ids = []
        while not self.stop.is_set():
            i += 1
            calls = [
                ("add", {"args": [i, 1]}),
                ("mul", {"args": [i, 2]}),
                ("xsum", {"args": [[random.random() for _ in range(50)]]}),
            ]
            if i % 3 == 0:
                calls.append(("long_job", {"kwargs": {"seconds": 2, "steps": 2}}))
            if i % 5 == 0:
                calls.append(("rename_widget", {"args": [10_000_000 + i, "no such widget"]}))
            for name, body in calls:
                status, payload = post_json(f"{self.web}/api/tasks/{name}", body)
                if status == 202:
                    self.sent += 1
                    ids.append(payload.get("id"))
                else:
                    self.errors += 1
            for path in ["/", f"/api/tasks/{ids[-1]}" if ids else "/"]:
                try:
                    get(self.web + path)
                except Exception:
                    self.errors += 1
            self.stop.wait(0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env-file", type=Path, default=Path(os.environ.get("ENV_FILE", HERE.parent / ".env")))
    ap.add_argument("--web"), ap.add_argument("--exporter"), ap.add_argument("--queue-metrics")
    ap.add_argument("--web-metrics", help="host:port of web's /metrics (default: relayed from :9100 "
                    "inside the stack, which is not published)")
    ap.add_argument("--broker", default=os.environ.get("BROKER", "redis"), choices=["redis", "rabbitmq"])
    ap.add_argument("--seconds", type=int, default=150, help="load before the queries are checked (>= 90)")
    ap.add_argument("--prometheus-bin", default=shutil.which("prometheus") or "prometheus")
    args = ap.parse_args(argv)

    env = read_env_file(args.env_file) if args.env_file.is_file() else {}
    host = env.get("BIND_ADDRESS", "127.0.0.1")
    web = args.web or f"http://{host}:{env.get('WEB_PORT', '8000')}"
    exporter = args.exporter or f"{host}:{env.get('EXPORTER_PORT', '9808')}"
    queue_metrics = args.queue_metrics or f"{host}:{env.get('QUEUE_METRICS_PORT', '9809')}"
    strip = lambda u: u.split("://", 1)[-1].rstrip("/")  # noqa: E731
    if args.web_metrics:
        web_target = strip(args.web_metrics)
    else:
        relay = WebMetricsRelay(args.env_file, args.broker)
        relay.start()
        web_target = relay.target
    # The API needs a token: make one for this run, as an operator would.
    try:
        out = compose_exec(args.env_file, args.broker, "python", "manage.py", "api_token", "create",
                           "--name", f"stack-check-{int(time.time())}",
                           "--tasks", "add,mul,xsum,long_job,rename_widget")
        TOKEN.append(out.strip().splitlines()[-1])
    except Exception as exc:
        print(f"stack_check: could not create an API token: {exc}")
        return 2

    # Each target gets a minute to answer: a test just before this one may have restarted the
    # broker, and the exporters restart with it.
    for name, url in (("web", f"http://{web_target}/metrics"), ("celery-exporter", f"http://{strip(exporter)}/metrics"),
                      ("celery-stack-metrics", f"http://{strip(queue_metrics)}/metrics")):
        deadline = time.time() + 60
        while True:
            try:
                get(url)
                break
            except Exception as exc:
                if time.time() > deadline:
                    print(f"stack_check: {name} is not reachable at {url}: {exc}")
                    return 2
                time.sleep(2)

    work = Path(tempfile.mkdtemp(prefix="stack-check-"))
    port = free_port()
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(HERE / "prometheus" / "rules" / "*.yml")],
        "scrape_configs": [
            {"job_name": "celery-exporter", "static_configs": [{"targets": [strip(exporter)]}]},
            {"job_name": "celery-queue-metrics", "static_configs": [{"targets": [strip(queue_metrics)]}]},
            {"job_name": "web", "static_configs": [{"targets": [web_target]}]},
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    prom_url = f"http://127.0.0.1:{port}"
    log = open(work / "prometheus.log", "w")
    prom = subprocess.Popen(
        [args.prometheus_bin, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    load = Load(web)
    rc = 1
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if get(prom_url + "/-/ready")[0] == 200:
                    break
            except Exception:
                time.sleep(0.5)
        else:
            print("stack_check: Prometheus did not become ready; see", work / "prometheus.log")
            return 2
        print(f"stack_check: Prometheus {prom_url} scraping web={web_target} exporter={strip(exporter)} "
              f"queue-metrics={strip(queue_metrics)}; load for {args.seconds}s")
        load.start()
        time.sleep(max(args.seconds, 90))
        print(f"stack_check: load sent {load.sent} tasks ({load.errors} errors)")

        targets = json.loads(get(prom_url + "/api/v1/targets")[1])["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["lastError"]) for t in targets if t["health"] != "up"]
        if down:
            print(f"stack_check: targets not up: {down}")

        files = sorted((HERE / "grafana" / "dashboards").glob("*.json"))
        errors, queries = check_dashboards.structural(files)
        if errors:
            print("stack_check: dashboard structure errors:", *errors, sep="\n  ")
            return 1
        allow = "Oldest waiting message age" if args.broker == "rabbitmq" else None
        failures = check_dashboards.evaluate(prom_url, queries, "1m", "15m", False, allow)

        groups = json.loads(get(prom_url + "/api/v1/rules")[1])["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad_rules = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
        firing = sorted({r["name"] for r in rules if r.get("state") in ("firing", "pending")})

        print(f"stack_check: {len(queries) - len(failures)}/{len(queries)} dashboard queries returned data"
              + (f" (allowed empty: {allow})" if allow else ""))
        for f in failures:
            print("  " + f)
        print(f"stack_check: {len(rules)} rules evaluated, {len(bad_rules)} with errors; pending/firing: {firing}")
        for b in bad_rules:
            print("  " + b)
        rc = 0 if not failures and not bad_rules and not down else 1
        print("stack_check:", "PASS" if rc == 0 else "FAIL")
        return rc
    finally:
        load.stop.set()
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(20)
        except subprocess.TimeoutExpired:
            prom.kill()
        log.close()
        if rc == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("stack_check: Prometheus files kept in", work)


if __name__ == "__main__":
    raise SystemExit(main())
