"""train/pretrain.py with the real DeepSpeed engine on CPU (gloo, ZeRO 2), one process: exact
kill-and-resume, the export, checkpoint safety, and config errors before any model (two ranks and
two nodes: test_trainer_ranks.py, a file of its own so that xdist runs the two halves side by
side)."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from process_fixtures import clean_env, launch, losses, run_warm
from unified_fixtures import load_script
from unimodal.config import ConfigError, load_config
from unimodal.pretraining.config import PretrainConfig

pytestmark = pytest.mark.slow  # end-to-end training runs (tests/conftest.py starts them first)


@pytest.fixture(scope="module")
def straight_run(tiny_config, tmp_path_factory) -> Path:
    """One uninterrupted 6-step run of the tiny config under the DeepSpeed launcher (`deepspeed
    train/pretrain.py`, as users run it; the other runs here start the script on its own), shared
    by the tests that only read it (a test that changes it works on a copy)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    launch(tiny_config, out, launcher=True)
    return out


def test_one_process_trains_checkpoints_and_exports(straight_run):
    out = straight_run
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "text_loss", "image_loss", "grad_norm", "tokens_per_s", "tflops"):
        assert all(math.isfinite(r[key]) and r[key] > 0 for r in log), key
    assert all(0 < r["mfu"] < 1 for r in log)
    assert all(0 <= r["data_wait_frac"] < 1 for r in log)
    flops = [r["train_flops"] for r in log]   # cumulative: grows by every step's FLOPs
    assert all(0 < a < b for a, b in zip(flops, flops[1:]))
    assert log[-1]["bad_samples"] == {"text": 0, "t2i": 0, "c2i": 0}
    # lr follows warmup (2 steps) then cosine down to 0.1 x (logged after each step's update)
    lrs = [r["lr"] for r in log]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert log[-1]["loss"] < log[0]["loss"]
    steps = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert steps == ["step_00000003", "step_00000006"]
    assert any((out / "tensorboard").iterdir())
    from unimodal.model.export import load_unified

    model, _ = load_unified(out / "export")
    ema = load_file(str(out / "checkpoints/step_00000006/ema.safetensors"))
    name = "backbone.model.layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(model.state_dict()[name], ema[name])  # the export holds the EMA


def test_kill_and_resume_repeats_the_uninterrupted_losses(tiny_config, straight_run, tmp_path):
    straight, split = straight_run, tmp_path / "split"
    crashed = launch(tiny_config, split, "train.stop_after=4", check=False)
    assert crashed.returncode != 0 and not (split / "export").exists()
    assert "StoppedEarly: train.stop_after=4: stopping at step 4" in crashed.stderr
    assert sorted(p.name for p in (split / "checkpoints").iterdir()
                  if p.name.startswith("step_")) == ["step_00000003"]
    launch(tiny_config, split, "--resume")
    a, b = losses(straight), losses(split)
    assert set(a) == set(b) == set(range(1, 7))
    for step in range(1, 7):
        assert a[step] == b[step], (step, a[step], b[step])
    # the cumulative FLOPs come back from the checkpoint: the resumed run counts on from step 3
    assert losses(straight, "train_flops") == losses(split, "train_flops")
    ema_a = load_file(str(straight / "checkpoints/step_00000006/ema.safetensors"))
    ema_b = load_file(str(split / "checkpoints/step_00000006/ema.safetensors"))
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k


def test_bad_configs_fail_before_any_model(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.setps"):
        load_config(PretrainConfig, tiny_config, ["train.setps=3"])
    with pytest.raises(ConfigError, match=r"train\.steps"):
        load_config(PretrainConfig, tiny_config, ["train.steps=lots"])
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]\.shards"):
        load_config(PretrainConfig, tiny_config, ["data.sources.0.shards=/nope/x-{0..3}.tar"])
    with pytest.raises(ConfigError, match=r"model\.image_tokenizer"):
        load_config(PretrainConfig, tiny_config, ["model.image_tokenizer="])
    with pytest.raises(ConfigError, match=r"model\.backbone\.base_model"):
        load_config(PretrainConfig, tiny_config, ["model.backbone.base_model=/nope"])
    with pytest.raises(ConfigError, match=r"ema_decay"):
        load_config(PretrainConfig, tiny_config, ["deepspeed.zero_optimization.stage=3"])
    with pytest.raises(ConfigError, match=r"deepspeed\.optimizer"):
        load_config(PretrainConfig, tiny_config, ["deepspeed.optimizer.type=AdamW"])


def test_image_geometry_comes_from_the_image_tokenizer(tiny_config):
    """K, T and the grid have one source of truth: left out, they are read from the tokenizer;
    stated, they must agree with it (the error names the key)."""
    blank = ["model.vocab.codebook_size=0", "model.vocab.code_maps=0", "model.vocab.grid=[]"]
    vocab = load_config(PretrainConfig, tiny_config, blank).model.vocab
    assert (vocab.codebook_size, vocab.code_maps, list(vocab.grid)) == (64, 4, [8, 8])
    with pytest.raises(ConfigError, match=r"model\.vocab\.code_maps=5 but the image tokenizer"):
        load_config(PretrainConfig, tiny_config, ["model.vocab.code_maps=5"])
    with pytest.raises(ConfigError, match=r"model\.vocab\.grid=\[4, 4\]"):
        load_config(PretrainConfig, tiny_config, ["model.vocab.grid=[4,4]"])
    # T was model.vocab.steps, beside train.steps (optimizer steps): the old key names the new one.
    with pytest.raises(ConfigError, match=r"model\.vocab\.steps was renamed to model\.vocab\.code_maps"):
        load_config(PretrainConfig, tiny_config, ["model.vocab.steps=4"])

@pytest.mark.parametrize("name", ["mp_rank_00_model_states.pt",
                                  "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_resume_refuses_a_planted_pickle(tiny_config, straight_run, tmp_path, name):
    from safe_loading_fixtures import plant_payload

    out = tmp_path / "run"
    shutil.copytree(straight_run, out)  # planted in a copy; its latest checkpoint is step 6
    marker = plant_payload(out / "checkpoints/step_00000006" / name, tmp_path / "code_ran")
    done = launch(tiny_config, out, "train.steps=7", "--resume", check=False)
    assert done.returncode != 0 and "refused to load" in done.stdout + done.stderr
    assert not marker.exists(), f"unpickling {name} ran code"


@pytest.mark.parametrize("override, key", [
    ("optim.lr=0", "optim.lr"), ("optim.lr=-1e-3", "optim.lr"), ("optim.lr=nan", "optim.lr"),
    ("optim.warmup_steps=-1", "optim.warmup_steps"), ("optim.min_lr_ratio=-0.1", "optim.min_lr_ratio"),
    ("optim.betas=[0.9,1.0]", "optim.betas"), ("optim.betas=[-0.1,0.95]", "optim.betas"),
    ("optim.betas=[0.9]", "optim.betas"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.eps=0", "optim.eps"), ("train.keep_checkpoints=-1", "train.keep_checkpoints"),
    ("train.max_nonfinite_steps=-2", "train.max_nonfinite_steps"),
    ("model.code_head=mlp", "model.code_head"),
])
def test_values_that_cannot_work_are_refused_naming_the_key(tiny_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(PretrainConfig, tiny_config, [override])


def test_fp8_without_torchao_is_refused_before_any_model(tiny_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(ConfigError, match=r"model\.fp8='tensorwise' needs torchao"):
        load_config(PretrainConfig, tiny_config, ["model.fp8=tensorwise"])
    load_config(PretrainConfig, tiny_config, ["model.fp8="])  # off: torchao is not needed


def test_fresh_run_into_another_runs_folder_is_refused(tiny_config, straight_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight_run, out)  # a folder that holds a finished run
    # Refused before anything is built (no process group), so the entry script runs in-process.
    with pytest.raises(ConfigError, match=r"train\.out_dir=.* already holds a run"):
        load_script("train/pretrain.py").main(
            ["--config", str(tiny_config), f"train.out_dir={out}", "train.steps=1"])
    launch(tiny_config, out, "train.steps=2", "train.overwrite=true")
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_periodic_exports_and_the_accuracy_curve(tiny_config, tmp_path):
    out = tmp_path / "run"
    launch(tiny_config, out, "train.steps=4", "train.export_every=2")
    assert sorted(p.name for p in (out / "exports").iterdir()) == ["step_00000002"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert all(b["elapsed_s"] > a["elapsed_s"] > 0 for a, b in zip(log, log[1:]))
    points = load_script("eval/accuracy_curve.py").main(  # both exports scored at once
        [f"run={out}", "captions=2", "per_class=1", "device=cpu", "sampling.cfg_scale=2", "jobs=2"])
    assert [p["step"] for p in points] == [2, 4]
    assert all(0 <= p["caption"] <= 1 and p["minutes"] > 0 for p in points)
    assert (out / "accuracy_curve" / "accuracy_curve.png").is_file()
    scored = out / "accuracy_curve" / "step_00000002" / "shapes_score.json"
    before = scored.stat().st_mtime_ns
    load_script("eval/accuracy_curve.py").main([f"run={out}", "captions=2", "per_class=1",
                                                "device=cpu", "sampling.cfg_scale=2"])
    assert scored.stat().st_mtime_ns == before  # finished scores are kept


def test_step_flops_count_zero3_partitioned_layers_in_full(tmp_path):
    """Under ZeRO 3 a rank's parameters are shards (numel 0 here); the FLOPs must not shrink."""
    from unified_fixtures import make_assets, tiny_model

    from unimodal.pretraining.flops import step_flops

    _, tok_dir, tok, vocab, vocab_cfg = make_assets(tmp_path)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir)
    full = step_flops(model, 256, 100, 80, 64, 256)
    # The trainer sums the counts of a log window and converts once: FLOPs must be linear in them.
    assert step_flops(model, 512, 130, 200, 96, 256) == pytest.approx(
        full + step_flops(model, 256, 30, 120, 32, 256))
    for p in model.backbone.model.layers.parameters():
        p.ds_numel = p.numel()       # what DeepSpeed records before partitioning
        p.data = p.data.new_empty(0)  # what a ZeRO 3 rank holds between gathers
    assert step_flops(model, 256, 100, 80, 64, 256) == full


def run_with_slow_loader(config: str, out: str, delay: str) -> None:
    """Child process: the tiny pretraining with `delay` seconds added before every batch."""
    import time

    from unimodal import distributed as D
    from unimodal.pretraining.trainer import Pretrainer

    cfg = load_config(PretrainConfig, config, [f"train.out_dir={out}", "train.tensorboard=false",
                                               "train.steps=2", "train.log_every=2"])
    trainer = Pretrainer(cfg)
    real = trainer.stream

    class SlowStream:
        def __iter__(self):
            for batch in real:
                time.sleep(float(delay))
                yield batch

        def state_dict(self):  # checkpoints save the loader's position
            return real.state_dict()

    trainer.stream = SlowStream()
    try:
        trainer.run()
    finally:
        D.shutdown()


def test_the_log_says_when_the_loader_is_the_bottleneck(tiny_config, tmp_path):
    code = ("import sys; sys.path[:0] = %r; from test_trainer import run_with_slow_loader; "
            "run_with_slow_loader(*sys.argv[1:])"
            % [str(Path(__file__).parent), str(Path(__file__).parents[1])])
    out = tmp_path / "slow"
    done = run_warm(["-c", code, str(tiny_config), str(out), "1.0"],
                    {**clean_env(), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # a tiny CPU step takes a fraction of the 1 s the loader now needs per batch (even on a
    # busy 2-core box: failing needs a step slower than the wait itself); one window of 2 steps
    fracs = losses(out, "data_wait_frac")
    assert list(fracs) == [2] and fracs[2] > 0.5


def test_deepspeed_steps_a_fused_adamw(tiny_config, tmp_path):
    out = tmp_path / "fused"
    launch(tiny_config, out, "optim.fused=true", "train.steps=3", "train.log_every=1",
           "train.checkpoint_every=100")
    log = losses(out)
    assert sorted(log) == [1, 2, 3] and all(math.isfinite(v) for v in log.values())
    assert "fused: true" in (out / "pretrain_config.yaml").read_text()
