"""The `make chaos` table: one row per fault run, from the JSON lines each pytest session writes.

recover s: from the end of the fault (the crash, or the moment it was lifted) until every task
accepted so far was final; "-" when some never were (lost).

    python3 tests/chaos/report.py build/chaos/results-*.jsonl > build/chaos/results.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    ("fault", "fault"),
    ("broker", "broker"),
    ("sent", "sent"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("recover s", "recover_s"),
    ("api max latency s", "api_max_latency_s"),
    ("verdict", "verdict"),
    ("notes", "notes"),
)


def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or ""
    return str(value).replace("|", "/")


def render(rows: list[dict]) -> str:
    lines = [
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(cell(row, key) for _, key in COLUMNS) + " |" for row in rows]
    passed = sum(1 for row in rows if row.get("verdict") == "PASS")
    lines.append("")
    lines.append(f"{passed} passed, {len(rows) - passed} failed")
    return "\n".join(lines)


def load(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        p = Path(path)
        if p.exists():
            rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return rows


if __name__ == "__main__":
    print(render(load(sys.argv[1:])))
