"""The objectives study end to end through eval/objectives.py's main on a CPU-sized grid
(configs/objectives_tiny.yaml: 3 objectives x 1 size x 2 FLOPs budgets): table, plots, budgets
that buy steps, and a rerun that skips finished cells; and the config checks that run first."""

import json

import pytest

from unified_fixtures import ROOT, load_script
from unimodal.config import ConfigError
from unimodal.objective_study.cell import Cell, plan_steps
from unimodal.objective_study.config import ModelSize

TINY = str(ROOT / "configs/objectives_tiny.yaml")
OBJECTIVES = ("rdpm", "next_token", "masked")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A shapes classifier at the tests' CPU setting: seconds, not one to score with."""
    out = tmp_path_factory.mktemp("classifier")
    load_script("eval/train_shapes_classifier.py").main(
        [f"out={out}", "steps=5", "batch_size=16", "model.image_size=32",
         "model.channels=[16,32,32]", "model.feature_dim=64", "heldout_images=32", "device=cpu"])
    return out


def _rows(markdown: str) -> list[list[str]]:
    lines = [x for x in markdown.splitlines() if x.startswith("| ") and not x.startswith("| objective")]
    return [[c.strip() for c in x.strip("|").split("|")] for x in lines]


@pytest.mark.slow
def test_tiny_grid_end_to_end_then_a_rerun_skips_finished_cells(tmp_path, classifier, capsys):
    main = load_script("eval/objectives.py").main
    out = tmp_path / "study"
    argv = ["--config", TINY, f"out={out}", f"score.classifier={classifier}"]
    first = main(argv)
    cells = [r["cell"] for r in first["results"]]
    assert len(cells) == 6 and sorted(first["trained"]) == sorted(cells)

    # results.md: one row per cell, the FD column named for what it is, never FID.
    md = (out / "results.md").read_text()
    header = next(x for x in md.splitlines() if x.startswith("| objective"))
    assert "FD (shapes-classifier features)" in header and "FID" not in header
    assert "ms/img @ batch 1" in header and "ms/img @ batch 4" in header
    rows = _rows(md)
    assert sorted(r[0] for r in rows) == sorted(OBJECTIVES * 2)
    for name in ("accuracy_vs_train_flops.png", "distance_vs_train_flops.png",
                 "quality_vs_inference_cost.png"):
        assert (out / name).stat().st_size > 1000
    table = next(block for block in md.split("\n\n") if block.startswith("| objective"))
    assert capsys.readouterr().out.rstrip().endswith(table)      # the table is printed last

    # More budget buys more steps and more training FLOPs; each cell trained its planned steps.
    by_objective = {}
    for r in first["results"]:
        log = [json.loads(x) for x in
               (out / "cells" / r["cell"] / "train/log.jsonl").read_text().splitlines()]
        assert log[-1]["step"] == r["steps"] and log[-1]["train_flops"] == r["train_flops"]
        assert r["steps"] == round(r["budget"] / r["flops_per_step"])
        scores = r["scores"]
        assert 0 <= scores["captions"]["prompt"] <= 1 and scores["fd_shapes"] >= 0
        assert scores["inference_flops"] > 0 and all(v > 0 for v in scores["ms_per_image"].values())
        by_objective.setdefault(r["objective"], []).append(r)
    for runs in by_objective.values():
        small, big = sorted(runs, key=lambda r: r["budget"])
        assert big["steps"] > small["steps"] and big["train_flops"] > small["train_flops"]
    # Sampling cost follows each sampler: masked S = 4 passes, next_token h*w = 16 codes, rdpm T = 3.
    steps_to_sample = {r["objective"]: r["scores"]["sampling_steps"] for r in first["results"]}
    assert steps_to_sample == {"rdpm": 3, "next_token": 16, "masked": 4}

    # Rerun after one cell lost its result: only that cell trains again, the others are skipped.
    logs = {c: (out / "cells" / c / "train/log.jsonl").stat().st_mtime_ns for c in cells}
    lost = cells[3]
    (out / "cells" / lost / "result.json").unlink()
    capsys.readouterr()
    second = main(argv)
    assert second["trained"] == [lost]
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 5
    for c in cells:
        changed = (out / "cells" / c / "train/log.jsonl").stat().st_mtime_ns != logs[c]
        assert changed == (c == lost), c
    assert len(_rows((out / "results.md").read_text())) == 6
    third = main(argv)   # everything finished: nothing trains, nothing is prepared
    assert third["trained"] == []


@pytest.mark.parametrize("words,key", [
    (["objectives=[rdpm,flow]"], "objectives: unknown image objective 'flow'"),
    (["objectives=[]"], "objectives: empty grid"),
    (["sizes=[]"], "sizes: empty grid"),
    (["budgets=[]"], "budgets: empty grid"),
    (["budgets=[1e8,-5]"], "budgets: -5"),
    (["score.classifier=/nonexistent"], "score.classifier="),
    (["score.timing_batch_sizes=[0]"], "score.timing_batch_sizes"),
    (["prepare.rdpm_steps=1"], "prepare.rdpm_steps=1"),
])
def test_bad_configs_fail_before_any_work_naming_the_key(tmp_path, classifier, words, key):
    main = load_script("eval/objectives.py").main
    out = tmp_path / "study"
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("(", r"\(")):
        main(["--config", TINY, f"out={out}", f"score.classifier={classifier}", *words])
    assert not out.exists()


def test_a_budget_below_one_step_is_refused_naming_budgets():
    cell = Cell("masked", ModelSize(), 1e6)
    assert plan_steps(cell, 4e5) == 2
    with pytest.raises(ConfigError, match="budgets: 1e\\+06 FLOPs is less than one training step"):
        plan_steps(cell, 3e6)
