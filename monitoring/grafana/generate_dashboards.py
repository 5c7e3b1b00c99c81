#!/usr/bin/env python3
"""Writes monitoring/grafana/dashboards/*.json: the source of the three celery-stack dashboards.

Edit this file, run `python3 monitoring/grafana/generate_dashboards.py`, commit both.
`make monitoring-check` fails if the JSON is out of date (`--check`).
Every query goes through the `datasource` variable; no query names a job. Every query filters
by the `namespace` variable: two releases on one Prometheus (one per namespace) never merge;
under Compose there is no namespace label and "All" (.*) matches its absence.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
N = 'namespace=~"$namespace"'
Q = f'{N}, queue_name=~"$queue"'
P = f'{N}, pool=~"$pool"'
WEB_EXCLUDE = f'{N}, view!~"prometheus-django-metrics|healthz|readyz"'


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.x = self.y = self.row_h = 0
        self.next_id = 1
        self.panels: list[dict] = []

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["datasource"] = DS
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({
            "id": self.next_id, "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        })
        self.next_id += 1
        self.y += 1


def targets(*exprs, instant=False, fmt="time_series"):
    out = []
    for i, item in enumerate(exprs):
        expr, legend = item if isinstance(item, tuple) else (item, "")
        t = {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
             "range": not instant, "instant": instant, "format": fmt}
        out.append(t)
    return out


def timeseries(title, *exprs, unit="short", description="", stack=False, min0=True):
    defaults = {"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never",
                                         "stacking": {"mode": "normal" if stack else "none"}}}
    if min0:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": description,
            "targets": targets(*exprs),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, expr, unit="short", description="", thresholds=None, decimals=None):
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description,
            "targets": targets((expr, ""), instant=True),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": "auto"}}


def table(title, expr, description=""):
    return {"type": "table", "title": title, "description": description,
            "targets": targets((expr, ""), instant=True, fmt="table"),
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]}


def var_datasource():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def var_query(name, label, metric, label_name):
    """A multi-value variable with All (.*), which also matches series without the label."""
    q = f"label_values({metric}, {label_name})"
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": q, "refId": f"{name}-var"}, "definition": q,
            "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "options": [],
            "refresh": 2, "sort": 1, "regex": "", "hide": 0}


def var_namespace(metric):
    """The release's namespace (chart); empty under Compose, where All (.*) is the only choice."""
    return var_query("namespace", "Namespace", metric, "namespace")


def dashboard(uid, title, description, tags, layout: Layout, variables):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["celery-stack", *tags],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {}, "timezone": "browser",
        "templating": {"list": variables}, "annotations": {"list": []},
        "links": [{"title": "celery-stack", "type": "dashboards", "tags": ["celery-stack"], "asDropdown": True}],
        "panels": layout.panels,
    }


def overview():
    L = Layout()
    L.row("Workers")
    L.add(stat("Live workers", f"sum(celery_pool_workers{{{N}}})", description="Workers whose heartbeat is recent (celery-stack-metrics)."), 4, 4)
    L.add(stat("Active tasks", f"sum(celery_pool_active_tasks{{{N}}})"), 4, 4)
    L.add(stat("Tasks started in range", f"sum(increase(celery_task_started_total{{{Q}}}[$__range]))", decimals=0), 4, 4)
    L.add(stat("Failure ratio in range",
               f"sum(increase(celery_task_failed_total{{{Q}}}[$__range])) / "
               f"(sum(increase(celery_task_failed_total{{{Q}}}[$__range])) + sum(increase(celery_task_succeeded_total{{{Q}}}[$__range])))",
               unit="percentunit", thresholds=[(0.01, "orange"), (0.05, "red")]), 4, 4)
    L.add(stat("Beat: last tick", f"time() - max(celery_beat_last_tick_timestamp_seconds{{{N}}})", unit="s",
               description="Seconds since beat sent jobs.tasks.beat_heartbeat (every 15 s).",
               thresholds=[(30, "orange"), (60, "red")], decimals=0), 4, 4)
    L.add(stat("Oldest heartbeat", f"max(time() - celery_worker_last_heartbeat_timestamp_seconds{{{N}}})", unit="s",
               thresholds=[(30, "orange"), (60, "red")], decimals=0), 4, 4)
    L.add(timeseries("Worker heartbeat age", (f"time() - celery_worker_last_heartbeat_timestamp_seconds{{{N}}}", "{{worker}}"),
                     unit="s", description="Heartbeats arrive every 2 s; a crashed worker's line climbs until it is dropped."), 8, 8)
    L.add(timeseries("Active tasks per worker", (f"sum by (hostname) (celery_worker_tasks_active{{{N}}})", "{{hostname}}"),
                     description="celery-exporter's view (hostname is the part after @)."), 8, 8)
    L.add(timeseries("Live workers per pool", (f"sum by (pool) (celery_pool_workers{{{N}}})", "{{pool}}")), 8, 8)
    L.row("Tasks")
    L.add(timeseries("Throughput by task and queue (started/s)",
                     (f"sum by (queue_name, name) (rate(celery_task_started_total{{{Q}}}[$__rate_interval]))", "{{queue_name}} {{name}}"),
                     unit="ops"), 12, 8)
    L.add(timeseries("Succeeded vs failed (/s)",
                     (f"sum by (queue_name) (rate(celery_task_succeeded_total{{{Q}}}[$__rate_interval]))", "succeeded {{queue_name}}"),
                     (f"sum by (queue_name) (rate(celery_task_failed_total{{{Q}}}[$__rate_interval]))", "failed {{queue_name}}"),
                     unit="ops"), 12, 8)
    L.add(timeseries("Failures by task (/s)",
                     (f"sum by (queue_name, name) (rate(celery_task_failed_total{{{Q}}}[$__rate_interval]))", "{{queue_name}} {{name}}"),
                     unit="ops"), 12, 8)
    L.add(table("Top failing tasks in range",
                f"topk(10, sum by (name, queue_name, exception) (increase(celery_task_failed_total{{{Q}}}[$__range])))",
                description="Failures per task and exception class over the dashboard's time range."), 12, 8)
    L.add(timeseries("Internal errors per pool and reason (task-internal-error)",
                     (f"sum by (pool, reason) (increase(celery_task_internal_errors_total{{{N}}}[$__rate_interval]))", "{{pool}} {{reason}}"),
                     description="Errors outside the task body, from the worker's task-internal-error events "
                                 "(celery-stack-metrics). result_not_recorded: the result could not be written because "
                                 "the database was unreachable; the task was requeued and the worker paused consuming "
                                 "until the database answered. internal: any other error outside the task body; the "
                                 "task may stay PENDING. Not filtered by queue. Every configured pool shows 0 when all is well."), 24, 8)
    L.row("Runtime")
    for q in ("0.50", "0.95", "0.99"):
        L.add(timeseries(f"Runtime p{int(float(q) * 100)} by queue",
                         (f"histogram_quantile({q}, sum by (queue_name, le) (rate(celery_task_runtime_bucket{{{Q}}}[$__rate_interval])))",
                          "{{queue_name}}"), unit="s"), 8, 8)
    L.add(timeseries("Runtime p95 by task",
                     (f"histogram_quantile(0.95, sum by (name, le) (rate(celery_task_runtime_bucket{{{Q}}}[$__rate_interval])))", "{{name}}"),
                     unit="s"), 24, 8)
    L.row("Outbox and dead letters")
    L.add(timeseries("Outbox: oldest unpublished task", (f"max(celery_outbox_oldest_pending_age_seconds{{{N}}})", "oldest"),
                     unit="s",
                     description="Seconds since the oldest committed but unpublished outbox row was written (celery-stack-metrics, "
                                 "from the app's database). beat's drain-outbox publishes every 10 s, so this stays near 0; "
                                 "it climbs while the broker is unreachable or beat is down. CeleryOutboxNotRelayed: > 60 s for 3 m."), 8, 8)
    L.add(timeseries("Outbox: unpublished tasks", (f"max(celery_outbox_pending_tasks{{{N}}})", "pending"),
                     description="Outbox rows waiting for the relay."), 8, 8)
    L.add(timeseries("Dead letters per reason",
                     (f"sum by (reason) (celery_dead_letters{{{N}}}) or on () vector(0)", "{{reason}}"),
                     description="Rows of the dead-letter store per reason (0 while it is empty). "
                                 "CeleryDeadLettersGrowing fires when a reason grew in the last 15 m."), 8, 8)
    return dashboard("celery-stack-overview", "Celery / Overview",
                     "Workers, throughput, failures and runtimes (celery-exporter + celery-stack-metrics).",
                     ["celery"], L,
                     [var_datasource(), var_namespace("celery_stack_metrics_broker_up"),
                      var_query("queue", "Queue", f"celery_queue_length{{{N}}}", "queue_name")])


def queues():
    L = Layout()
    L.row("Queues")
    L.add(timeseries("Queue depth (ready messages, priority sub-lists included)",
                     (f"max by (queue_name) (celery_queue_depth{{{Q}}})", "{{queue_name}}"),
                     description="celery-stack-metrics: LLEN over the base list and every priority sub-list (Redis) or message_count (RabbitMQ)."), 12, 8)
    L.add(timeseries("Oldest waiting message age",
                     (f"max by (queue_name) (celery_queue_oldest_message_age_seconds{{{Q}}})", "{{queue_name}}"),
                     unit="s", description="From the published_at header of the message at the tail of each list (Redis only)."), 12, 8)
    for q in ("0.50", "0.95", "0.99"):
        L.add(timeseries(f"Wait time p{int(float(q) * 100)} (publish to start)",
                         (f"histogram_quantile({q}, sum by (queue_name, le) (rate(celery_queue_wait_time_seconds_bucket{{{Q}}}[$__rate_interval])))",
                          "{{queue_name}}"), unit="s"), 8, 8)
    L.add(timeseries("Tasks started per queue (/s)",
                     (f"sum by (queue_name) (rate(celery_queue_wait_time_seconds_count{{{Q}}}[$__rate_interval]))", "{{queue_name}}"),
                     unit="ops"), 12, 8)
    L.add(timeseries("celery-exporter queue length (base list only) vs depth",
                     (f"max by (queue_name) (celery_queue_length{{{Q}}})", "celery_queue_length {{queue_name}}"),
                     (f"max by (queue_name) (celery_queue_depth{{{Q}}})", "depth {{queue_name}}"),
                     description="celery-exporter counts only the base Redis list; the difference is messages in priority sub-lists."), 12, 8)
    L.row("Autoscaling")
    L.add(timeseries("Desired vs actual replicas per pool",
                     (f"ceil(max by (pool) (celery_pool_scaling_signal{{{P}}}))", "desired {{pool}}"),
                     (f"sum by (pool) (celery_pool_workers{{{P}}})", "actual {{pool}}"),
                     description="desired = ceil((queued + active) / concurrency), before the autoscaler's min/max; actual = live workers."), 12, 8)
    L.add(timeseries("Backlog per pool (the KEDA metric: queued + active)",
                     (f"sum by (pool) (celery_pool_queued_messages{{{P}}})", "queued {{pool}}"),
                     (f"sum by (pool) (celery_pool_active_tasks{{{P}}})", "active {{pool}}"),
                     stack=True), 12, 8)
    L.add(timeseries("Scaling signal ((queued + active) / concurrency)",
                     (f"max by (pool) (celery_pool_scaling_signal{{{P}}})", "{{pool}}")), 8, 8)
    L.add(timeseries("Pool utilisation (active / (workers x concurrency))",
                     (f"sum by (pool) (celery_pool_active_tasks{{{P}}}) / (sum by (pool) (celery_pool_workers{{{P}}}) * max by (pool) (celery_pool_concurrency{{{P}}}) > 0)",
                      "{{pool}}"), unit="percentunit"), 8, 8)
    L.add(table("Pools",
                f"max by (pool) (celery_pool_concurrency{{{P}}})",
                description="Configured concurrency per replica (METRICS_POOLS)."), 8, 8)
    return dashboard("celery-stack-queues", "Celery / Queues & autoscaling",
                     "Queue depth, oldest message age, wait-time percentiles, and desired vs actual worker replicas per pool.",
                     ["celery", "autoscaling"], L,
                     [var_datasource(), var_namespace("celery_stack_metrics_broker_up"),
                      var_query("queue", "Queue", f"celery_queue_depth{{{N}}}", "queue_name"),
                      var_query("pool", "Pool", f"celery_pool_concurrency{{{N}}}", "pool")])


def web():
    L = Layout()
    L.row("Traffic")
    L.add(stat("Requests/s", f"sum(rate(django_http_requests_total_by_view_transport_method_total{{{WEB_EXCLUDE}}}[$__rate_interval]))",
               unit="reqps", decimals=2), 6, 4)
    L.add(stat("5xx ratio",
               f'(sum(rate(django_http_responses_total_by_status_view_method_total{{status=~"5..", {WEB_EXCLUDE}}}[$__rate_interval])) or vector(0)) / '
               f"sum(rate(django_http_responses_total_by_status_view_method_total{{{WEB_EXCLUDE}}}[$__rate_interval]))",
               unit="percentunit", thresholds=[(0.01, "orange"), (0.05, "red")]), 6, 4)
    L.add(stat("p95 latency",
               f"histogram_quantile(0.95, sum by (le) (rate(django_http_requests_latency_seconds_by_view_method_bucket{{{WEB_EXCLUDE}}}[$__rate_interval])))",
               unit="s", thresholds=[(0.5, "orange"), (1, "red")]), 6, 4)
    L.add(stat("Gunicorn workers", f"sum(gunicorn_workers{{{N}}})", thresholds=[]), 6, 4)
    L.add(timeseries("Requests/s by view",
                     (f"sum by (view) (rate(django_http_requests_total_by_view_transport_method_total{{{N}}}[$__rate_interval]))", "{{view}}"),
                     unit="reqps"), 12, 8)
    L.add(timeseries("Responses/s by status",
                     (f"sum by (status) (rate(django_http_responses_total_by_status_view_method_total{{{N}}}[$__rate_interval]))", "{{status}}"),
                     unit="reqps"), 12, 8)
    L.row("Errors and latency")
    L.add(timeseries("Error ratio (4xx, 5xx; probes excluded)",
                     (f'(sum(rate(django_http_responses_total_by_status_view_method_total{{status=~"5..", {WEB_EXCLUDE}}}[$__rate_interval])) or vector(0)) / sum(rate(django_http_responses_total_by_status_view_method_total{{{WEB_EXCLUDE}}}[$__rate_interval]))', "5xx"),
                     (f'(sum(rate(django_http_responses_total_by_status_view_method_total{{status=~"4..", {WEB_EXCLUDE}}}[$__rate_interval])) or vector(0)) / sum(rate(django_http_responses_total_by_status_view_method_total{{{WEB_EXCLUDE}}}[$__rate_interval]))', "4xx"),
                     unit="percentunit"), 12, 8)
    L.add(timeseries("Latency p50 / p95 / p99 (probes excluded)",
                     *[(f"histogram_quantile({q}, sum by (le) (rate(django_http_requests_latency_seconds_by_view_method_bucket{{{WEB_EXCLUDE}}}[$__rate_interval])))", f"p{int(float(q) * 100)}")
                       for q in ("0.50", "0.95", "0.99")],
                     unit="s"), 12, 8)
    L.add(timeseries("p95 latency by view",
                     (f"histogram_quantile(0.95, sum by (view, le) (rate(django_http_requests_latency_seconds_by_view_method_bucket{{{N}}}[$__rate_interval])))", "{{view}}"),
                     unit="s"), 12, 8)
    L.add(timeseries("Gunicorn workers per instance", (f"sum by (instance) (gunicorn_workers{{{N}}})", "{{instance}}")), 12, 8)
    return dashboard("celery-stack-web", "Celery stack / Web",
                     "Django web: request rate, latency and errors (django-prometheus), gunicorn workers.",
                     ["web"], L, [var_datasource(), var_namespace("gunicorn_workers")])


def render() -> dict[str, str]:
    return {f"{d['uid']}.json": json.dumps(d, indent=2, sort_keys=False) + "\n" for d in (overview(), queues(), web())}


def main() -> int:
    files = render()
    if "--check" in sys.argv[1:]:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"dashboards out of date: {stale}; run python3 monitoring/grafana/generate_dashboards.py")
            return 1
        print(f"dashboards up to date ({len(files)})")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
