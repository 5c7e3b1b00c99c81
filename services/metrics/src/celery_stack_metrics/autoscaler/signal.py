"""The scaling signal: each pool's backlog (queued + active tasks) and concurrency per replica,
from celery-stack-metrics or from Prometheus, with the series the chart's KEDA query sums."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


class MetricsError(Exception):
    pass


@dataclass(frozen=True)
class Signal:
    backlog: float  # queued + active
    concurrency: float | None  # per replica, None when the source does not say


def _fetch(url: str, timeout: float = 10.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) checked in load()
            return resp.read()
    except (OSError, urllib.error.URLError) as exc:
        raise MetricsError(f"{url} unreachable: {exc}") from exc


def read_companion(url: str, pools) -> dict[str, Signal]:
    """One scrape of celery-stack-metrics; the same series the chart's KEDA query sums."""
    text = _fetch(url).decode()
    queued, active, conc = {}, {}, {}
    for fam in text_string_to_metric_families(text):
        target = {
            "celery_pool_queued_messages": queued,
            "celery_pool_active_tasks": active,
            "celery_pool_concurrency": conc,
        }.get(fam.name)
        if target is None:
            continue
        for s in fam.samples:
            pool = s.labels.get("pool")
            target[pool] = target.get(pool, 0.0) + s.value
    out = {}
    for name in pools:
        # The companion drops the queued series while the broker is unreachable: no number is
        # better than a wrong one (like the chart's ignoreNullValues: false).
        if name not in queued:
            raise MetricsError(f"{url}: no celery_pool_queued_messages for pool {name!r} (broker down?)")
        out[name] = Signal(queued[name] + active.get(name, 0.0), conc.get(name))
    return out


def _prom_query(base: str, query: str) -> float | None:
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = json.loads(_fetch(url))
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{base}: not a Prometheus API answer ({exc})") from exc
    if body.get("status") != "success":
        raise MetricsError(f"{base}: query failed: {body.get('error')}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def read_prometheus(base: str, pools, labels: dict) -> dict[str, Signal]:
    """The chart's query, verbatim, against a Prometheus server."""
    out = {}
    for name in pools:
        sel = ",".join([f'pool="{name}"', *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
        backlog = _prom_query(
            base, f"sum(celery_pool_queued_messages{{{sel}}}) + sum(celery_pool_active_tasks{{{sel}}})"
        )
        if backlog is None:
            raise MetricsError(f"{base}: empty result for pool {name!r}'s backlog")
        out[name] = Signal(backlog, _prom_query(base, f"max(celery_pool_concurrency{{{sel}}})"))
    return out
