"""One cell of the study (unimodal/objective_study/cell.py): names, the grid and run order, the
cell's pretraining config built from the study's base, FLOPs per step and the planned steps, and
training in a child process whose failures are reported with the log."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mixture_fixtures import CLASSES, GRID, code_record, write_tar
from unified_fixtures import ROOT, make_assets
from unimodal.config import ConfigError
from unimodal.objective_study.cell import (Cell, cell_pretrain_config, flops_per_step, grid_cells,
                                           plan_steps, run_order, train_cell)
from unimodal.objective_study.config import ModelSize, ObjectivesStudyConfig
from unimodal.objective_study.prepare import Prepared
from unimodal.pretraining.config import PretrainConfig

SMALL, BIG = ModelSize(name="s"), ModelSize(name="b", hidden_size=128)


def test_names_records_and_the_grid_order():
    assert Cell("rdpm", SMALL, 7e7).name == "rdpm__s__7e07"
    assert Cell("masked", BIG, 1.8e8).name == "masked__b__1.8e08"
    assert Cell("next_token", SMALL, 123456.0).name == "next_token__s__1.235e05"
    assert Cell("rdpm", BIG, 2.0).record() == {
        "objective": "rdpm", "budget": 2.0,
        "size": {"name": "b", "hidden_size": 128, "num_layers": 2, "num_heads": 4,
                 "num_kv_heads": 4, "intermediate_size": 256}}
    cfg = ObjectivesStudyConfig(objectives=["rdpm", "masked"], sizes=[SMALL, BIG], budgets=[9.0, 3.0])
    assert [c.name for c in grid_cells(cfg)] == [          # budgets innermost, sorted
        "rdpm__s__3", "rdpm__s__9", "rdpm__b__3", "rdpm__b__9",
        "masked__s__3", "masked__s__9", "masked__b__3", "masked__b__9"]


def test_run_order_is_smallest_budget_first_then_size_with_every_objective_side_by_side():
    cfg = ObjectivesStudyConfig(objectives=["rdpm", "masked"], sizes=[SMALL, BIG], budgets=[9.0, 3.0])
    cells = [Cell(o, s, b) for o in cfg.objectives for s in cfg.sizes for b in (3.0, 9.0)]
    assert [c.name for c in run_order(cfg, cells)] == [
        "rdpm__s__3", "masked__s__3", "rdpm__b__3", "masked__b__3",
        "rdpm__s__9", "masked__s__9", "rdpm__b__9", "masked__b__9"]


def test_a_budget_below_one_step_is_refused_naming_budgets():
    cell = Cell("masked", ModelSize(), 1e6)
    assert plan_steps(cell, 4e5) == 2                      # 2.5 rounds to the even 2
    assert plan_steps(cell, 1.5e5) == 7
    with pytest.raises(ConfigError, match="budgets: 1e\\+06 FLOPs is less than one training step"):
        plan_steps(cell, 3e6)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """make_assets' text model, an RDPM (T = 4) and a plain VQ (T = 1) tokenizer, and shards of each."""
    rdpm, vq = tmp_path_factory.mktemp("rdpm"), tmp_path_factory.mktemp("vq")
    text_model = make_assets(rdpm)[0]
    shutil.copy(text_model, vq / "text.model")             # make_assets trains it only once
    make_assets(vq, code_maps=1)
    rng = np.random.default_rng(0)
    shards = {kind: write_tar(folder / "codes.tar", [   # shapes codes: a class id and a caption
        code_record(f"{i:03d}", rng, class_id=i % CLASSES, caption="a red circle", shape=(maps, *GRID))
        for i in range(8)]) for kind, folder, maps in (("rdpm", rdpm, 4), ("vq", vq, 1))}
    return Prepared(text_model, {"rdpm": rdpm / "image_tokenizer", "vq": vq / "image_tokenizer"}, shards)


def study(**kw) -> ObjectivesStudyConfig:
    return ObjectivesStudyConfig(pretrain_config=str(ROOT / "configs/uni_tiny.yaml"), **kw)


def test_the_cell_config_is_the_base_with_the_cells_choices(prepared, tmp_path):
    cfg = study(pretrain_overrides="optim.lr=0.01 data.step_weights=[0,1,1,1]")
    pcfg = cell_pretrain_config(cfg, Cell("rdpm", BIG, 1e9), prepared, tmp_path / "rdpm", steps=7)
    assert (pcfg.model.image_objective, pcfg.model.code_head) == ("rdpm", "latent")
    assert pcfg.model.image_tokenizer == str(prepared.tokenizers["rdpm"])
    assert pcfg.model.vocab.text_tokenizer == str(prepared.text_tokenizer)
    assert pcfg.model.vocab.code_maps == 4 and pcfg.model.backbone.hidden_size == 128
    assert pcfg.optim.lr == 0.01 and pcfg.data.step_weights == [0, 1, 1, 1]
    assert (pcfg.train.out_dir, pcfg.train.steps, pcfg.train.overwrite) == (str(tmp_path / "rdpm"), 7, True)
    assert [(s.name, s.kind, s.shards, s.weight) for s in pcfg.data.sources] == [
        ("shapes_t2i", "caption_images", prepared.shards["rdpm"], 0.67),
        ("shapes_c2i", "class_images", prepared.shards["rdpm"], 0.33)]
    token = cell_pretrain_config(cfg, Cell("next_token", SMALL, 1e9), prepared, tmp_path / "nt")
    assert (token.model.code_head, token.model.vocab.code_maps) == ("shared", 1)
    assert token.model.image_tokenizer == str(prepared.tokenizers["vq"])
    assert token.data.step_weights == [] and token.model.backbone.hidden_size == 64


def test_flops_per_step_scales_with_gradient_accumulation(prepared, tmp_path):
    pcfg = cell_pretrain_config(study(), Cell("masked", SMALL, 1e9), prepared, tmp_path)
    one = flops_per_step(pcfg, 2)
    pcfg.train.gradient_accumulation = 3
    assert one > 0 and flops_per_step(pcfg, 2) == pytest.approx(3 * one)


FAKE_TRAINER = """
import json, sys, yaml
from pathlib import Path
cfg = yaml.safe_load(open(sys.argv[2]))
out = Path(cfg["train"]["out_dir"])
out.mkdir(parents=True, exist_ok=True)
print("fake trainer says hello")
steps = {"ok": cfg["train"]["steps"], "short": 1, "fail": None}[out.name]
if steps is None:
    print("boom", file=sys.stderr)
    sys.exit(3)
out.joinpath("log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\\n"
                                             for s in range(1, steps + 1)))
"""


def test_train_cell_runs_the_trainer_and_reports_failures(tmp_path):
    scripts = tmp_path / "scripts"
    (scripts / "train").mkdir(parents=True)
    (scripts / "train" / "pretrain.py").write_text(FAKE_TRAINER)
    pcfg = PretrainConfig()
    pcfg.train.steps = 4
    for name in ("ok", "short", "fail"):
        pcfg = replace(pcfg, train=replace(pcfg.train, out_dir=str(tmp_path / name)))
        config = tmp_path / f"cell_{name}" / "pretrain.yaml"
        if name == "ok":
            assert train_cell(pcfg, config, scripts) == {"step": 4, "loss": 0.25}
            assert "fake trainer says hello" in (config.parent / "train.log").read_text()
        elif name == "short":
            with pytest.raises(RuntimeError, match=r"short: training ended before step 4"):
                train_cell(pcfg, config, scripts)
        else:
            with pytest.raises(RuntimeError, match=r"(?s)training cell_fail failed \(train/pretrain\.py "
                                                   r"--config .*pretrain\.yaml.*\):\n.*boom"):
                train_cell(pcfg, config, scripts)
