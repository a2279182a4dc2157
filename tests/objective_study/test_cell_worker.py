"""One cell in its own process (unimodal/objective_study/cell_worker.py): the steady seconds per
step from the trainer's log, atomic JSON writes, and run_cell / main against a stand-in trainer
and scorer: the result merges the plan, the last log record and the scores, and a failed training
leaves no result.json."""

import json
from dataclasses import replace

import pytest

from unimodal.config import save_config
from unimodal.objective_study import cell_worker
from unimodal.objective_study.cell_worker import (PLAN_FILE, PRETRAIN_FILE, RESULT_FILE, main,
                                                  steady_seconds_per_step, write_json_atomic)
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.pretraining.config import PretrainConfig


def test_steady_seconds_per_step_leaves_out_the_start():
    log = [{"event": "start"}, {"step": 10, "elapsed_s": 25.0}, {"step": 20, "elapsed_s": 30.0},
           {"step": 30, "elapsed_s": 35.0}, {"step": 30, "note": "no time"}]
    assert steady_seconds_per_step(log, fallback=9.0) == 0.5            # (35 - 25) / (30 - 10)
    assert steady_seconds_per_step(log[:2], fallback=9.0) == 9.0        # one timed record
    assert steady_seconds_per_step([{"step": 5, "elapsed_s": 1.0}, {"step": 5, "elapsed_s": 2.0}],
                                   fallback=9.0) == 9.0                 # no steps between
    assert steady_seconds_per_step([], fallback=3.0) == 3.0


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    write_json_atomic(tmp_path / "r.json", {"b": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


FAKE_TRAINER = """
import json, sys, yaml
from pathlib import Path
cfg = yaml.safe_load(open(sys.argv[2]))
out = Path(cfg["train"]["out_dir"])
if Path(__file__).with_name("fail").exists():
    sys.exit("stand-in trainer: refusing")
out.mkdir(parents=True, exist_ok=True)
records = [{"step": s, "elapsed_s": 10.0 + 2 * s, "loss": 5.0 - s, "image_loss": 6.0 - s,
            "train_flops": 1e6 * s} for s in (1, 2, 3)]
out.joinpath("log.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in records))
"""


@pytest.fixture
def cell(tmp_path, monkeypatch):
    """A cell folder with plan.json and pretrain.yaml, a stand-in trainer, a stand-in scorer."""
    scripts = tmp_path / "scripts"
    (scripts / "train").mkdir(parents=True)
    (scripts / "train" / "pretrain.py").write_text(FAKE_TRAINER)
    folder = tmp_path / "cells" / "rdpm__s__1e06"
    folder.mkdir(parents=True)
    plan = {"objective": "rdpm", "budget": 1e6, "steps": 3, "flops_per_step": 1e6, "cell": folder.name}
    (folder / PLAN_FILE).write_text(json.dumps(plan))
    pcfg = PretrainConfig()
    pcfg = replace(pcfg, train=replace(pcfg.train, out_dir=str(folder / "train"), steps=3))
    save_config(pcfg, folder / PRETRAIN_FILE)
    study = tmp_path / "study.yaml"
    save_config(ObjectivesStudyConfig(), study)
    scored = []

    class StandInScorer:
        def __init__(self, score_cfg, sampling):
            self.cfg = score_cfg

        def score(self, export):
            scored.append(export)
            return {"fd_shapes": 1.5}

    monkeypatch.setattr(cell_worker, "Scorer", StandInScorer)
    return folder, study, scripts, plan, scored


def test_main_trains_scores_and_writes_the_result(cell):
    folder, study, scripts, plan, scored = cell
    result = main([str(folder), str(study), str(scripts)])
    assert scored == [str(folder / "train" / "export")]
    assert json.loads((folder / RESULT_FILE).read_text()) == result
    assert {k: result[k] for k in plan} == plan
    assert (result["train_flops"], result["final_loss"], result["final_image_loss"]) == (3e6, 2.0, 3.0)
    assert result["scores"] == {"fd_shapes": 1.5}
    assert result["seconds_per_step"] == 2.0                            # from the log, not the wall
    assert 0 <= result["score_seconds"] <= result["seconds"] and result["train_seconds"] <= result["seconds"]
    assert result["started"] <= result["finished"]


def test_a_failed_training_leaves_no_result(cell):
    folder, study, scripts, _, scored = cell
    (scripts / "train" / "fail").touch()
    with pytest.raises(RuntimeError, match="(?s)training rdpm__s__1e06 failed.*stand-in trainer: refusing"):
        main([str(folder), str(study), str(scripts)])
    assert not (folder / RESULT_FILE).exists() and scored == []
