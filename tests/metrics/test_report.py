"""Evaluation reports (unimodal/metrics/report.py): the JSON round trip with its settings and
notes, the markdown tables against hand-written expected text, nested metrics as group/metric rows,
and writes that leave no temporary file."""

import json
from pathlib import Path

from unimodal.metrics.report import (flatten_metrics, grouped_table, key_value_table,
                                     markdown_table, write_report)


def test_flatten_names_leaves_group_slash_metric():
    assert flatten_metrics({"fid": 3.5, "class": {"prompt": 0.5, "color": None},
                            "deep": {"a": {"b": 1}}}) == {
        "fid": 3.5, "class/prompt": 0.5, "class/color": None, "deep/a/b": 1}


def test_tables_match_hand_written_markdown():
    assert key_value_table({"fid": 3.14159, "images": 12, "caption": {"prompt": None}}) == (
        "| metric | value |\n|---|---|\n| fid | 3.1416 |\n| images | 12 |\n| caption/prompt | - |\n")
    assert markdown_table({"a": 1.0}, {"seed": 0}, title="Run") == (
        "## Run\n\n| metric | value |\n|---|---|\n| a | 1.0000 |\n"
        "\n| setting | value |\n|---|---|\n| seed | 0 |\n")
    assert markdown_table({"a": 1}) == "| metric | value |\n|---|---|\n| a | 1 |\n"
    assert grouped_table({"cfg 1": {"fid": 2.0, "n": 3}, "cfg 3": {"n": 4}}, ["fid", "n"]) == (
        "| condition | fid | n |\n|---|---|---|\n| cfg 1 | 2.0000 | 3 |\n| cfg 3 | - | 4 |\n")


def test_write_report_round_trips_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "reports" / "run1"                       # created on the way
    metrics = {"fid": 1.5, "caption": {"prompt": 0.25}}
    settings = {"checkpoint": Path("/ckpt"), "cfg_scale": 2.0}
    report = write_report(out, "fid", metrics, settings, notes=["random weights"], title="FID")
    saved = json.loads((out / "fid.json").read_text())
    assert saved == {"metrics": metrics, "settings": {"checkpoint": "/ckpt", "cfg_scale": 2.0},
                     "notes": ["random weights"]}        # non-JSON values written as strings
    assert report["metrics"] is metrics and report["notes"] == ["random weights"]
    assert (out / "fid.md").read_text() == (
        "## FID\n\n| metric | value |\n|---|---|\n| fid | 1.5000 |\n| caption/prompt | 0.2500 |\n"
        "\n| setting | value |\n|---|---|\n| checkpoint | /ckpt |\n| cfg_scale | 2.0000 |\n"
        "\n- random weights\n")
    assert sorted(p.name for p in out.iterdir()) == ["fid.json", "fid.md"]


def test_a_given_table_replaces_the_metric_rows_and_a_rewrite_replaces_the_file(tmp_path):
    write_report(tmp_path, "r", {"x": 1}, {"s": 1}, notes=["old"])
    write_report(tmp_path, "r", {"x": 2}, {"s": 1}, table="| custom |\n")
    assert (tmp_path / "r.md").read_text() == "| custom |\n\n| setting | value |\n|---|---|\n| s | 1 |\n"
    assert json.loads((tmp_path / "r.json").read_text())["notes"] == []
