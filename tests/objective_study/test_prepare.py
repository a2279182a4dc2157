"""What every cell shares (unimodal/objective_study/prepare.py): which tokenizers a grid needs,
shard names, the tokenizer trainer's words, pieces already there skipped (a rerun trains nothing),
and the side-by-side tokenizer training against a stand-in trainer, its failures named with their
log."""

import pytest

from unimodal.objective_study.config import ObjectivesStudyConfig, PrepareConfig
from unimodal.objective_study.prepare import (Prepared, last_shard, prepare, shard_pattern,
                                              tokenizer_kinds, tokenizer_words, train_side_by_side)


def study(tmp_path, objectives=("rdpm", "masked"), **prep) -> ObjectivesStudyConfig:
    return ObjectivesStudyConfig(out=str(tmp_path / "study"), objectives=list(objectives),
                                 prepare=PrepareConfig(**{"rdpm_code_maps": 6, "train_images": 2500,
                                                          "shard_size": 1000, **prep}))


def test_the_tokenizers_a_grid_needs(tmp_path):
    assert tokenizer_kinds(study(tmp_path)) == {"rdpm": 6, "vq": 1}
    assert tokenizer_kinds(study(tmp_path, ["rdpm"])) == {"rdpm": 6}
    assert tokenizer_kinds(study(tmp_path, ["next_token", "masked"])) == {"vq": 1}


def test_shard_names(tmp_path):
    assert [last_shard(n, 1000) for n in (1, 999, 1000, 1001, 4000)] == [0, 0, 0, 1, 3]
    assert shard_pattern(tmp_path, 2500, 1000) == str(tmp_path / "shard-{000000..000002}.tar")


def test_tokenizer_words_put_the_overrides_first(tmp_path):
    cfg = study(tmp_path, tokenizer_overrides="optim.lr=1e-3 'train.log_every=7'", tokenizer_steps=50,
                image_size=32, device="cpu")
    assert tokenizer_words(cfg, "vq", 1) == [
        "optim.lr=1e-3", "train.log_every=7", "model.code_maps=1", "train.steps=50",
        f"train.out_dir={tmp_path / 'study' / 'prepare' / 'vq'}", "data.image_size=32",
        "train.device=cpu", "train.overwrite=true"]


def _done(root, kinds=("rdpm", "vq"), codes=True, tokenizers=True):
    """Mark pieces of the prepare folder as finished (their final files exist)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.model").write_bytes(b"")
    for kind in kinds:
        if tokenizers:
            (root / kind / "tokenizer").mkdir(parents=True, exist_ok=True)
            (root / kind / "tokenizer" / "tokenizer.safetensors").write_bytes(b"")
        if codes:
            (root / kind / "codes").mkdir(parents=True, exist_ok=True)
            (root / kind / "codes" / "shard-000002.tar").write_bytes(b"")


def test_a_finished_prepare_folder_is_reused_without_running_anything(tmp_path):
    cfg = study(tmp_path, dir=str(tmp_path / "shared"))
    _done(tmp_path / "shared")
    lines = []
    prepared = prepare(cfg, tmp_path / "no_scripts_here", log=lines.append)
    root = tmp_path / "shared"
    assert lines == [] and not (tmp_path / "study").exists()
    assert prepared == Prepared(root / "text.model",
                                {"rdpm": root / "rdpm" / "tokenizer", "vq": root / "vq" / "tokenizer"},
                                {"rdpm": str(root / "rdpm" / "codes" / "shard-{000000..000002}.tar"),
                                 "vq": str(root / "vq" / "codes" / "shard-{000000..000002}.tar")})
    assert prepared.for_objective("masked") == (root / "vq" / "tokenizer", prepared.shards["vq"])
    assert prepared.for_objective("rdpm")[0] == root / "rdpm" / "tokenizer"


STAND_IN = """
import sys
from pathlib import Path
words = dict(w.split("=", 1) for w in sys.argv[3:])
out = Path(words["train.out_dir"])
print("training", out.name, "T =", words["model.code_maps"], flush=True)
if out.name in {failing}:
    sys.exit("stand-in: " + out.name + " broke")
(out / "tokenizer").mkdir(parents=True, exist_ok=True)
(out / "tokenizer" / "tokenizer.safetensors").write_bytes(b"")
"""


def _scripts(tmp_path, failing=()):
    scripts = tmp_path / "scripts"
    (scripts / "tokenizers").mkdir(parents=True, exist_ok=True)
    (scripts / "tokenizers" / "train_rdpm.py").write_text(STAND_IN.replace("{failing}", repr(set(failing))))
    return scripts


def test_parallel_prepare_trains_the_missing_tokenizers_side_by_side(tmp_path):
    cfg = study(tmp_path, parallel=True)
    root = cfg.prepare_dir()
    _done(root, tokenizers=False)                  # text model and codes there, tokenizers not
    lines = []
    prepared = prepare(cfg, _scripts(tmp_path), log=lines.append)
    assert prepared.tokenizers == {"rdpm": root / "rdpm" / "tokenizer", "vq": root / "vq" / "tokenizer"}
    assert (root / "rdpm_tokenizer.log").read_text() == "training rdpm T = 6\n"
    assert (root / "vq_tokenizer.log").read_text() == "training vq T = 1\n"
    assert any("rdpm image tokenizer (T = 6" in line for line in lines)
    assert lines[-1].startswith("prepare: rdpm, vq image tokenizers trained side by side in ")


def test_a_failed_side_by_side_training_names_the_kind_and_its_log(tmp_path):
    cfg = study(tmp_path)
    cfg.prepare_dir().mkdir(parents=True)
    with pytest.raises(RuntimeError, match=r"(?s)image tokenizer training failed: vq \(.*vq_tokenizer\.log\)"
                                           r":\ntraining vq T = 1\nstand-in: vq broke"):
        train_side_by_side(cfg, {"rdpm": 6, "vq": 1}, _scripts(tmp_path, failing=["vq"]), log=print)
    assert (cfg.prepare_dir() / "rdpm" / "tokenizer" / "tokenizer.safetensors").is_file()
