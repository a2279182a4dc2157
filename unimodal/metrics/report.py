"""Evaluation reports: one JSON file (numbers + the settings that produced them) and one markdown
table per run, written side by side.

Design choices, one line each:
- A report is {"metrics": {...}, "settings": {...}, "notes": [...]}: the numbers never travel
  without the sampling settings, checkpoint hash and weights files they came from.
- Metrics may be nested one level ({"class": {...}, "caption": {...}}): the markdown shows one
  row per leaf, named `group/metric`.
- Files are written to a temporary name and renamed, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def flatten_metrics(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, name + "/"))
        else:
            flat[name] = value
    return flat


def key_value_table(values: dict, header: str = "metric") -> str:
    rows = [f"| {k} | {_cell(v)} |" for k, v in flatten_metrics(values).items()]
    return "\n".join([f"| {header} | value |", "|---|---|", *rows]) + "\n"


def markdown_table(metrics: dict, settings: dict | None = None, title: str = "") -> str:
    text = (f"## {title}\n\n" if title else "") + key_value_table(metrics)
    return text + ("\n" + key_value_table(settings, "setting") if settings else "")


def grouped_table(groups: dict[str, dict], columns: list[str], header: str = "condition") -> str:
    """One row per group, one column per metric (missing = "-")."""
    lines = [f"| {header} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_cell(values.get(c)) for c in columns) + " |"
              for name, values in groups.items()]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out_dir: str | Path, stem: str, metrics: dict, settings: dict,
                 notes: list[str] | None = None, title: str = "", table: str | None = None) -> dict:
    """Write <out_dir>/<stem>.json and <stem>.md (`table`, when given, is the markdown for the
    metrics instead of one row per metric); returns the report dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"metrics": metrics, "settings": settings, "notes": list(notes or [])}
    _write_atomic(out / f"{stem}.json", json.dumps(report, indent=2, default=str))
    text = (f"## {title}\n\n" if title else "") + (table or key_value_table(metrics))
    text += "\n" + key_value_table(settings, "setting")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    _write_atomic(out / f"{stem}.md", text)
    return report
