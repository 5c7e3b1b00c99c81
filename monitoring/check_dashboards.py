#!/usr/bin/env python3
"""Checks the Grafana dashboards in monitoring/grafana/dashboards/ (Grafana itself cannot run here).

  python3 monitoring/check_dashboards.py                       structural checks + PromQL syntax
  python3 monitoring/check_dashboards.py --prometheus URL      ... and evaluate EVERY panel query
                                                                and variable query; each must
                                                                return data (non-NaN)
  python3 monitoring/check_dashboards.py --self-test           broken copies must be rejected

Structural checks: valid JSON; uid and title present, uids unique across files; panel ids unique
(rows included); gridPos integers inside the 24-column grid without overlaps; a `datasource`
variable, used by every panel, target and query variable; a `queue` variable on every dashboard
whose queries filter by queue; a `namespace` variable that every panel query filters by (two
releases on one Prometheus never merge); every $variable used is defined; no query names a job.
PromQL syntax goes through `promtool check rules` when promtool is on PATH.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "grafana" / "dashboards"
DS_REFS = {"${datasource}", "$datasource"}
BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms", "__range_ms"}
JOB_MATCHER = re.compile(r"\bjob\s*(=~|!~|!=|=)")
VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def ds_ok(ds) -> bool:
    if isinstance(ds, dict):
        return ds.get("uid") in DS_REFS
    return ds in DS_REFS


def substitute(expr: str, variables: dict, rate_interval: str, rng: str) -> str:
    expr = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    expr = expr.replace("$__interval", "15s").replace("${__interval}", "15s")
    expr = expr.replace("$__range", rng).replace("${__range}", rng)

    def repl(m):
        name = m.group(1) or m.group(2)
        return variables.get(name, m.group(0))

    return VAR_REF.sub(repl, expr)


def var_value(v: dict) -> str:
    if v.get("includeAll") or v.get("multi"):
        return v.get("allValue") or ".*"
    return ".*"


def structural(files: list[Path]) -> tuple[list[str], list[tuple[str, str, str]]]:
    errors: list[str] = []
    queries: list[tuple[str, str, str]] = []  # (where, raw expr, kind)
    uids: dict[str, str] = {}
    for f in files:
        where = f.name
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON: {exc}")
            continue
        uid = d.get("uid")
        if not uid or not isinstance(uid, str) or len(uid) > 40:
            errors.append(f"{where}: missing or invalid uid (max 40 characters)")
        elif uid in uids:
            errors.append(f"{where}: uid {uid!r} also used by {uids[uid]}")
        else:
            uids[uid] = where
        if not d.get("title"):
            errors.append(f"{where}: missing title")
        variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
        dsv = variables.get("datasource")
        if not dsv or dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
            errors.append(f"{where}: needs a `datasource` variable of type datasource (query prometheus)")
        defined = set(variables) | BUILTINS
        for name, v in variables.items():
            if v.get("type") == "query":
                if not ds_ok(v.get("datasource")):
                    errors.append(f"{where}: variable {name} does not use the datasource variable")
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                if q:
                    queries.append((f"{where} variable {name}", q, "variable"))
        ids: set[int] = set()
        boxes = []
        panel_exprs: list[str] = []
        for p in all_panels(d.get("panels", [])):
            pid = p.get("id")
            label = f"{where} panel {pid} {p.get('title', '')!r}"
            if not isinstance(pid, int):
                errors.append(f"{label}: id must be an integer")
            elif pid in ids:
                errors.append(f"{label}: duplicate panel id {pid}")
            else:
                ids.add(pid)
            g = p.get("gridPos")
            if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "xywh"):
                errors.append(f"{label}: gridPos needs integer x, y, w, h")
            else:
                if g["x"] < 0 or g["y"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
                    errors.append(f"{label}: gridPos {g} outside the 24-column grid")
                for other_label, o in boxes:
                    if (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                            and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]):
                        errors.append(f"{label}: gridPos overlaps {other_label}")
                boxes.append((label, g))
            if p.get("type") == "row":
                continue
            if not ds_ok(p.get("datasource")):
                errors.append(f"{label}: panel datasource must be the datasource variable")
            tgts = p.get("targets") or []
            if not tgts:
                errors.append(f"{label}: no targets")
            for t in tgts:
                if "datasource" in t and not ds_ok(t["datasource"]):
                    errors.append(f"{label} target {t.get('refId')}: datasource must be the datasource variable")
                expr = t.get("expr", "")
                if not expr:
                    errors.append(f"{label} target {t.get('refId')}: empty expr")
                    continue
                queries.append((f"{label} target {t.get('refId')}", expr, "panel"))
                panel_exprs.append(expr)
        for where_q, expr, _ in [q for q in queries if q[0].startswith(where)]:
            if JOB_MATCHER.search(expr):
                errors.append(f"{where_q}: hard-coded job matcher in {expr!r}")
            for m in VAR_REF.finditer(expr):
                name = m.group(1) or m.group(2)
                if name not in defined:
                    errors.append(f"{where_q}: undefined variable ${name}")
        if "namespace" not in variables:
            errors.append(f"{where}: needs a `namespace` variable (two releases on one Prometheus must not merge)")
        else:
            for e in panel_exprs:
                if "$namespace" not in e:
                    errors.append(f"{where}: query does not filter by $namespace: {e!r}")
        if any("queue_name" in e for e in panel_exprs) and "queue" not in variables:
            errors.append(f"{where}: queries filter by queue_name but there is no `queue` variable")
        _VARS[where] = {n: var_value(v) for n, v in variables.items() if n != "datasource"}
    return errors, queries


_VARS: dict[str, dict] = {}


def label_values_to_promql(q: str) -> str:
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", q)
    if m:
        return f"count by ({m.group(2)}) ({m.group(1)})"
    m = re.fullmatch(r"\s*label_values\((\w+)\)\s*", q)
    if m:
        return f'count by ({m.group(1)}) ({{{m.group(1)}!=""}})'
    return q


def promql_of(where: str, expr: str, kind: str, rate_interval: str, rng: str) -> str:
    variables = _VARS.get(where.split(" ", 1)[0], {})
    if kind == "variable":
        expr = label_values_to_promql(expr)
    return substitute(expr, variables, rate_interval, rng)


def promtool_syntax(queries, rate_interval, rng) -> list[str]:
    promtool = shutil.which("promtool")
    if not promtool:
        print("note: promtool not on PATH; PromQL syntax not checked", file=sys.stderr)
        return []
    rules = [{"record": f"dashboard:check_{i}:expr", "expr": promql_of(w, e, k, rate_interval, rng)}
             for i, (w, e, k) in enumerate(queries)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        json.dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, fh)
        path = fh.name
    r = subprocess.run([promtool, "check", "rules", "--lint=none", path], capture_output=True, text=True)
    Path(path).unlink()
    if r.returncode != 0:
        errs = [line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        # promtool names the rule by its index: dashboard:check_<i>:expr -> the panel
        names = {f"dashboard:check_{i}:expr": w for i, (w, _, _) in enumerate(queries)}
        for i, line in enumerate(errs):
            for rule, w in names.items():
                if rule in line:
                    errs[i] = f"{line}  <- {w}"
        return ["PromQL syntax (promtool check rules):", *errs[:40]]
    return []


def evaluate(prom: str, queries, rate_interval, rng, verbose, allow_empty: str | None = None) -> list[str]:
    failures = []
    skip = re.compile(allow_empty) if allow_empty else None
    for where, expr, kind in queries:
        if skip and skip.search(where):
            if verbose:
                print(f"skip {where} (--allow-empty)")
            continue
        promql = promql_of(where, expr, kind, rate_interval, rng)
        url = prom.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except Exception as exc:
            failures.append(f"{where}: query failed: {exc}\n    {promql}")
            continue
        if body.get("status") != "success":
            failures.append(f"{where}: {body.get('error')}\n    {promql}")
            continue
        data = body["data"]
        result = data["result"]
        if data["resultType"] == "scalar":
            values = [result[1]]
        elif data["resultType"] == "vector":
            values = [s["value"][1] for s in result]
        else:
            values = [v[1] for s in result for v in s.get("values", [])]
        numeric = [v for v in values if not math.isnan(float(v))]
        if not values:
            failures.append(f"{where}: no data\n    {promql}")
        elif not numeric:
            failures.append(f"{where}: only NaN ({len(values)} series)\n    {promql}")
        elif verbose:
            print(f"ok  {where}: {len(values)} series")
    return failures


def self_test(src: Path) -> int:
    """Each broken copy of the real dashboards must be rejected with the expected message."""
    import copy

    def panel(d, i):
        return [p for p in all_panels(d["panels"]) if p.get("type") != "row"][i]

    def set_(path, value):
        def mutate(d):
            obj = d
            for key in path[:-1]:
                obj = obj[key]
            obj[path[-1]] = value
        return mutate

    cases = {
        "duplicate panel id": (lambda d: panel(d, 1).__setitem__("id", panel(d, 0)["id"])),
        "outside the 24-column grid": (lambda d: panel(d, 0)["gridPos"].__setitem__("x", 20)),
        "overlaps": (lambda d: panel(d, 1).__setitem__("gridPos", dict(panel(d, 0)["gridPos"]))),
        "panel datasource must be the datasource variable":
            (lambda d: panel(d, 0).__setitem__("datasource", {"type": "prometheus", "uid": "prom-1"})),
        "target A: datasource must be": (lambda d: panel(d, 0)["targets"][0].__setitem__("datasource", "Prometheus")),
        "hard-coded job matcher": (lambda d: panel(d, 0)["targets"][0].__setitem__("expr", 'up{job="web"}')),
        "undefined variable $nosuch":
            (lambda d: panel(d, 0)["targets"][0].__setitem__("expr", 'up{instance=~"$nosuch"}')),
        "parse error": (lambda d: panel(d, 0)["targets"][0].__setitem__("expr", "sum(rate(up[5m])")),
        "needs a `datasource` variable":
            (lambda d: d["templating"].__setitem__("list", [v for v in d["templating"]["list"] if v["name"] != "datasource"])),
        "no `queue` variable":
            (lambda d: d["templating"].__setitem__("list", [v for v in d["templating"]["list"] if v["name"] != "queue"])),
        "missing or invalid uid": set_(["uid"], ""),
        "does not filter by $namespace":
            (lambda d: panel(d, 0)["targets"][0].__setitem__("expr", 'max by (queue_name) (celery_queue_depth{queue_name=~"$queue"})')),
        "needs a `namespace` variable":
            (lambda d: d["templating"].__setitem__("list", [v for v in d["templating"]["list"] if v["name"] != "namespace"])),
    }
    base = json.loads((src / "celery-stack-queues.json").read_text())
    failed = 0
    for expected, mutate in cases.items():
        d = copy.deepcopy(base)
        mutate(d)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "broken.json").write_text(json.dumps(d))
            _VARS.clear()
            errors, queries = structural([Path(tmp) / "broken.json"])
            if "parse error" in expected:
                errors += promtool_syntax(queries, "1m", "15m")
        if any(expected in e for e in errors):
            print(f"self-test ok: {expected}")
        else:
            failed += 1
            print(f"self-test FAILED: {expected!r} not reported; got {errors}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a.json", "b.json"):
            (Path(tmp) / name).write_text(json.dumps(base))
        _VARS.clear()
        errors, _ = structural(sorted(Path(tmp).glob("*.json")))
        ok = any("also used by" in e for e in errors)
        print(f"self-test {'ok' if ok else 'FAILED'}: duplicate uid across files")
        failed += not ok
    _VARS.clear()
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="dashboards directory")
    ap.add_argument("--prometheus", metavar="URL", help="evaluate every query against this Prometheus")
    ap.add_argument("--rate-interval", default="1m", help="value for $__rate_interval (default 1m)")
    ap.add_argument("--range", dest="rng", default="15m", help="value for $__range (default 15m)")
    ap.add_argument("--allow-empty", metavar="REGEX",
                    help="do not require data from queries whose panel matches (e.g. Redis-only panels on RabbitMQ)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--self-test", action="store_true", help="check that broken dashboards are rejected")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test(args.dir)

    files = sorted(args.dir.glob("*.json"))
    if not files:
        print(f"no dashboards in {args.dir}")
        return 1
    errors, queries = structural(files)
    errors += promtool_syntax(queries, args.rate_interval, args.rng)
    if errors:
        print("dashboard structure: FAILED")
        for e in errors:
            print("  " + e)
        return 1
    print(f"dashboard structure: OK ({len(files)} dashboards, {len(queries)} queries)")
    if args.prometheus:
        failures = evaluate(args.prometheus, queries, args.rate_interval, args.rng, args.verbose, args.allow_empty)
        if failures:
            print(f"dashboard queries against {args.prometheus}: {len(failures)} of {len(queries)} FAILED")
            for f in failures:
                print("  " + f)
            return 1
        print(f"dashboard queries against {args.prometheus}: all {len(queries)} returned data")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
