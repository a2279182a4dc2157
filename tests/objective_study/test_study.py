"""The objectives study end to end through eval/objectives.py's main on a CPU-sized grid
(configs/objectives_tiny.yaml: 3 objectives x 1 size x 2 FLOPs budgets): 2 cells at a time, table,
plots, budgets that buy steps, a deadline that leaves cells for a rerun, a rerun that skips finished
cells; and the config checks that run first."""

import json
import re

import pytest

from unified_fixtures import ROOT, load_script
from unimodal.config import ConfigError

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
def test_tiny_grid_end_to_end_then_a_deadline_and_reruns_finish_it(tmp_path, classifier, capsys):
    """First run: 2 cells at a time (and the two tokenizers side by side, prepare.parallel in
    the config). Then a result is lost: a rerun with a deadline does not start it, a serial rerun
    trains just that one, with the steps and FLOPs the parallel run gave it."""
    main = load_script("eval/objectives.py").main
    out = tmp_path / "study"
    argv = ["--config", TINY, f"out={out}", f"score.classifier={classifier}"]
    first = main(argv + ["parallel_cells=2"])
    printed = capsys.readouterr().out
    cells = [r["cell"] for r in first["results"]]
    assert len(cells) == 6 and sorted(first["trained"]) == sorted(cells)
    assert (out / "prepare/rdpm_tokenizer.log").is_file() and (out / "prepare/vq_tokenizer.log").is_file()
    # Smallest budget first: the pool launches the three 7e7 cells before the 1.8e8 ones (its own
    # "started" lines, in launch order: the workers' clocks would race each other), two workers at
    # a time, so the second started while the first still ran.
    launched = re.findall(r"^started (\S+) \(\d+ steps; (\d+) running", printed, re.M)
    budgets = {r["cell"]: r["budget"] for r in first["results"]}
    assert sorted(name for name, _ in launched) == sorted(cells)
    assert [budgets[name] for name, _ in launched] == sorted(budgets.values())
    assert [running for _, running in launched[:2]] == ["1", "2"]
    runs = first["results"]
    assert all(r["parallel_cells"] == 2 for r in runs)
    assert all(0 < r["seconds_per_step"] * r["steps"] <= r["train_seconds"] * (1 + 1e-9) for r in runs)

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
    assert printed.rstrip().endswith(table)                      # the table is printed last

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

    # A cell loses its result. A rerun with a deadline of 0.6 s does not start it (its estimate,
    # from its finished siblings, is seconds) and says what remains; the table has 5 rows.
    # (Which cells a rerun starts first is run_order's, unit-tested in test_cell.py.)
    logs = {c: (out / "cells" / c / "train/log.jsonl").stat().st_mtime_ns for c in cells}
    lost = ["masked__xs__7e07"]
    before = {c: json.loads((out / "cells" / c / "result.json").read_text()) for c in lost}
    for c in lost:
        (out / "cells" / c / "result.json").unlink()
    capsys.readouterr()
    second = main(argv + ["deadline_minutes=0.01"])
    assert second["trained"] == [] and second["remaining"] == lost
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 5
    assert "1 cell remains" in printed and all(c in printed for c in lost)
    assert len(_rows((out / "results.md").read_text())) == 5
    # A serial rerun trains just that one, with the same plan and count as in the parallel run.
    third = main(argv)
    assert third["trained"] == lost and third["remaining"] == []
    for c in lost:
        again = json.loads((out / "cells" / c / "result.json").read_text())
        for key in ("steps", "flops_per_step", "train_flops"):
            assert again[key] == before[c][key], (c, key)
        assert again["parallel_cells"] == 1
    for c in cells:
        changed = (out / "cells" / c / "train/log.jsonl").stat().st_mtime_ns != logs[c]
        assert changed == (c in lost), c
    assert len(_rows((out / "results.md").read_text())) == 6
    fourth = main(argv)   # everything finished: nothing trains, nothing is prepared
    assert fourth["trained"] == []


@pytest.mark.parametrize("words,key", [
    (["objectives=[rdpm,flow]"], "objectives: unknown image objective 'flow'"),
    (["objectives=[]"], "objectives: empty grid"),
    (["sizes=[]"], "sizes: empty grid"),
    (["budgets=[]"], "budgets: empty grid"),
    (["budgets=[1e8,-5]"], "budgets: -5"),
    (["score.classifier=/nonexistent"], "score.classifier="),
    (["score.timing_batch_sizes=[0]"], "score.timing_batch_sizes"),
    (["prepare.rdpm_code_maps=1"], "prepare.rdpm_code_maps=1"),
    (["prepare.rdpm_steps=4"], "prepare.rdpm_steps was renamed to prepare.rdpm_code_maps"),
    (["score.inception_weights=/nonexistent.pth"], "score.inception_weights='/nonexistent.pth'"),
    (["score.inception_feature_layer=100"], "score.inception_feature_layer='100'"),
    (["parallel_cells=0"], "parallel_cells=0: must be >= 1"),
    (["prepare.encode_workers=-1"], "prepare.encode_workers=-1"),
    (["prepare.encode_batch_size=0"], "prepare.encode_batch_size=0"),
    (["deadline_minutes=-1"], "deadline_minutes=-1"),
    (["deadline_minutes=8", "kill_at_minutes=5"], "kill_at_minutes=5"),
])
def test_bad_configs_fail_before_any_work_naming_the_key(tmp_path, classifier, words, key):
    main = load_script("eval/objectives.py").main
    out = tmp_path / "study"
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("(", r"\(")):
        main(["--config", TINY, f"out={out}", f"score.classifier={classifier}", *words])
    assert not out.exists()
