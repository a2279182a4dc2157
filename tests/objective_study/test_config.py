"""The objectives study's config (unimodal/objective_study/config.py): a valid grid passes, and
every value that cannot work fails with an error naming its key, before anything heavy runs."""

import math
from dataclasses import replace
from pathlib import Path

import pytest

from unified_fixtures import ROOT
from unimodal.config import ConfigError
from unimodal.objective_study.config import ModelSize, ObjectivesStudyConfig, PrepareConfig, ScoreConfig


@pytest.fixture
def good(tmp_path) -> ObjectivesStudyConfig:
    """A valid study: the shipped configs, a classifier folder (validation only looks for its file)."""
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "weights.safetensors").write_bytes(b"")
    return ObjectivesStudyConfig(
        out=str(tmp_path / "study"), pretrain_config=str(ROOT / "configs/uni_tiny.yaml"),
        prepare=PrepareConfig(tokenizer_config=str(ROOT / "configs/rdpm_tiny.yaml")),
        score=ScoreConfig(classifier=str(tmp_path / "classifier")))


def test_a_valid_grid_and_the_size_overrides(good, tmp_path):
    good.validate()
    assert good.prepare_dir() == tmp_path / "study" / "prepare"
    assert replace(good, prepare=replace(good.prepare, dir="/shared/prep")).prepare_dir() == \
        Path("/shared/prep")
    assert ModelSize(name="m", hidden_size=96, num_heads=6, num_kv_heads=2).backbone_overrides() == [
        "model.backbone.hidden_size=96", "model.backbone.num_layers=2", "model.backbone.num_heads=6",
        "model.backbone.num_kv_heads=2", "model.backbone.intermediate_size=256"]
    # a grid without rdpm may use T = 1; score only classes or only captions
    replace(good, objectives=["masked"], prepare=replace(good.prepare, rdpm_code_maps=1)).validate()
    replace(good, score=replace(good.score, captions=0, per_class=1)).validate()


def _set(cfg: ObjectivesStudyConfig, path: str, value) -> ObjectivesStudyConfig:
    section, _, key = path.rpartition(".")
    if not section:
        return replace(cfg, **{key: value})
    return replace(cfg, **{section: replace(getattr(cfg, section), **{key: value})})


@pytest.mark.parametrize("path,value,match", [
    ("objectives", [], r"^objectives: empty grid"),
    ("objectives", ["rdpm", "flow"], r"unknown image objective 'flow'"),
    ("objectives", ["rdpm", "rdpm"], r"objectives=\['rdpm', 'rdpm'\]: each name once"),
    ("sizes", [], r"^sizes: empty grid"),
    ("sizes", [ModelSize(name="a"), ModelSize(name="a")], r"sizes: names \['a', 'a'\] must be distinct"),
    ("sizes", [ModelSize(name="a/b")], r"must be distinct, non-empty, letters/digits/_"),
    ("sizes", [ModelSize(name="x", num_layers=0)], r"sizes\[0\] \(x\): every field must be >= 1"),
    ("sizes", [ModelSize(name="x", hidden_size=66)], r"sizes\[0\] \(x\): hidden_size divisible by num_heads"),
    ("sizes", [ModelSize(name="x", num_kv_heads=3)], r"num_heads by num_kv_heads"),
    ("budgets", [], r"^budgets: empty grid"),
    ("budgets", [1e8, math.inf], r"budgets: inf is not a positive finite"),
    ("budgets", [1e8, 1e8], r"budgets=\[100000000\.0, 100000000\.0\]: each budget once"),
    ("pretrain_config", "/no/base.yaml", r"pretrain_config='/no/base\.yaml': file not found"),
    ("prepare.tokenizer_config", "/no/tok.yaml", r"prepare\.tokenizer_config='/no/tok\.yaml'"),
    ("prepare.tokenizer_steps", 0, r"prepare\.tokenizer_steps=0: must be >= 1"),
    ("prepare.shard_size", 0, r"prepare\.shard_size=0"),
    ("flops_batches", 0, r"^flops_batches=0: must be >= 1"),
    ("score.timing_repeats", 0, r"score\.timing_repeats=0"),
    ("prepare.encode_workers", -1, r"prepare\.encode_workers=-1: must be >= 0"),
    ("parallel_cells", 0, r"parallel_cells=0: must be >= 1"),
    ("cell_minutes_estimate", math.nan, r"cell_minutes_estimate=nan: must be a finite number >= 0"),
    ("deadline_minutes", -1.0, r"deadline_minutes=-1\.0"),
    ("prepare.rdpm_code_maps", 1, r"prepare\.rdpm_code_maps=1: rdpm needs T >= 2"),
    ("score.captions", -1, r"score\.captions=-1, score\.per_class=2"),
    ("score.reference_images", 1, r"Fréchet distance needs >= 2 generated images"),
    ("score.timing_batch_sizes", [], r"score\.timing_batch_sizes=\[\]: sizes >= 1"),
    ("score.timing_batch_sizes", [4, 0], r"score\.timing_batch_sizes=\[4, 0\]"),
    ("score.classifier", "/no/classifier", r"score\.classifier='/no/classifier': no shapes classifier"),
    ("score.inception_weights", "/no/i.pth", r"score\.inception_weights='/no/i\.pth': file not found"),
    ("score.inception_feature_layer", "100", r"score\.inception_feature_layer='100': one of"),
])
def test_each_bad_value_names_its_key(good, path, value, match):
    with pytest.raises(ConfigError, match=match):
        _set(good, path, value).validate()


def test_the_remaining_checks(good):
    with pytest.raises(ConfigError, match=r"kill_at_minutes=5\.0: before deadline_minutes=8\.0"):
        replace(good, deadline_minutes=8.0, kill_at_minutes=5.0).validate()
    replace(good, deadline_minutes=8.0, kill_at_minutes=0.0).validate()      # 0 = never
    few = replace(good, score=replace(good.score, captions=1, per_class=0))
    with pytest.raises(ConfigError, match="Fréchet distance needs >= 2 generated images"):
        few.validate()
    with pytest.raises(ConfigError, match=r"score\.captions=0, score\.per_class=0: each >= 0, not both 0"):
        replace(good, score=replace(good.score, captions=0, per_class=0)).validate()
    with pytest.raises(ValueError, match=r"^sampling\.top_p=0"):
        _set(good, "sampling.top_p", 0.0).validate()
