"""tokenizers/train_rdpm.py end to end on CPU: it learns, keeps its codebook alive, resumes exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tokenizer_training_fixtures import ROOT, assert_resume_is_exact, tiny_args, train_main


def test_short_training_learns_and_keeps_codebook_alive(tmp_path):
    main = train_main()
    # 120 steps (GAN from step 100), logged every 5: measured rec 0.37 -> 0.12, psnr 15.8 dB.
    metrics = main(tiny_args(tmp_path, 120, "train.log_every=5", "loss.gan_start=100"))
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    first, last = logs[:3], logs[-3:]
    assert sum(r["rec"] for r in last) < 0.6 * sum(r["rec"] for r in first)
    assert all(r["usage"] > 0.3 for r in last)  # dead-code revival keeps codes in use
    assert "d" in logs[-1] and "gan_w" in logs[-1]  # the GAN switched on at step 100
    assert not any("d" in r for r in logs if r["step"] <= 100)
    assert metrics["psnr"] > 14 and metrics["codebook_usage"] > 0.3
    assert (tmp_path / "reconstructions.png").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.safetensors").is_file()


def test_resume_is_exact(tmp_path):
    # Stopped at step 6 (a checkpoint there, the GAN switching on), resumed to 12.
    assert_resume_is_exact(tiny_args, tmp_path, 12, "loss.gan_start=6")


def test_lr_schedules_warm_up_then_stay_or_decay_to_the_floor():
    from unimodal.config import load_config
    from unimodal.tokenizer.training import TokenizerTrainConfig, lr_factor

    def factors(schedule):
        cfg = load_config(TokenizerTrainConfig, ROOT / "configs/rdpm_tiny.yaml",
                          ["train.steps=100", "optim.warmup_steps=10", f"optim.schedule={schedule}",
                           "optim.min_lr_ratio=0.2"])
        return [lr_factor(step, cfg) for step in range(101)]

    constant, cosine = factors("constant"), factors("cosine")
    assert constant[:10] == pytest.approx([(s + 1) / 10 for s in range(10)]) == cosine[:10]
    assert constant[10:] == [1.0] * 91
    assert cosine[10] == 1.0 and cosine[100] == pytest.approx(0.2)
    assert cosine[55] == pytest.approx(0.6)  # half way down the cosine
    assert all(a > b for a, b in zip(cosine[10:100], cosine[11:101]))


def test_bad_config_fails_before_training(tmp_path):
    from unimodal.config import ConfigError

    with pytest.raises(ConfigError, match=r"model\.schedul"):
        train_main()(tiny_args(tmp_path, 5, "model.schedul=pow"))
    assert not (tmp_path / "log.jsonl").exists()


def test_decoder_fine_tune_keeps_the_codes_and_improves_reconstruction(tmp_path):
    """train.train_only=decoder: encoder and quantizer stay bit-equal (shards encoded with the base
    stay valid), the decoder learns, and check_same_codes tells such a pair from a retrained one."""
    from unimodal.tokenizer.rdpm_tokenizer import check_same_codes, load_tokenizer

    main = train_main()
    base_metrics = main(tiny_args(tmp_path / "base", 12))
    # 80 steps, the discriminator for the last 10 at a tenth of its weight. 40 steps with it from
    # step 30 at full weight gained 0.1-0.4 dB or lost 0.1, depending on float rounding alone
    # (threads, GroupNorm kernel): this run gains 0.4-1.6 dB over those variants.
    ft_metrics = main(tiny_args(tmp_path / "ft", 80, f"train.init_from={tmp_path / 'base/tokenizer'}",
                                "train.train_only=decoder", "optim.schedule=cosine",
                                "loss.gan_start=70", "loss.gan_weight=0.1"))
    base, ft = load_tokenizer(tmp_path / "base/tokenizer"), load_tokenizer(tmp_path / "ft/tokenizer")
    for name, weight in base.named_parameters():
        assert torch.equal(weight, ft.get_parameter(name)) != name.startswith("decoder."), name
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(base.encode(images, [5, 6, 7, 8]), ft.encode(images, [5, 6, 7, 8]))
    assert ft_metrics["psnr"] > base_metrics["psnr"] + 0.2  # measured: 10.49 -> 10.88 dB
    check_same_codes(base, ft, "ft")  # passes: same codes, other decoder
    # A tokenizer trained on (all weights) encodes differently: refused by name.
    main(tiny_args(tmp_path / "more", 14, f"train.init_from={tmp_path / 'base/tokenizer'}"))
    with pytest.raises(ValueError, match=r"more: its weight (encoder|quantizer)\."):
        check_same_codes(base, load_tokenizer(tmp_path / "more/tokenizer"), "more")
    with pytest.raises(ValueError, match=r"codebook_size \(64 there, 32 here\)"):
        main(tiny_args(tmp_path / "bad", 2, f"train.init_from={tmp_path / 'base/tokenizer'}",
                       "model.codebook_size=32"))


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    """torchrun with 2 CPU processes (gloo): DDP, all-reduced dead-code tracking, rank-0 writes."""
    import os
    import sys

    from process_fixtures import run_group

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tokenizers/train_rdpm.py"), *tiny_args(tmp_path, 6, "train.threads=1")]
    done = run_group(cmd, env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["step"] == 6
    assert (tmp_path / "tokenizer" / "tokenizer.safetensors").is_file()
    assert done.stdout.count("held-out:") == 1  # evaluation and files come from rank 0 only


def test_diagnostics_on_log_steps_and_time_budget(tmp_path, capsys):
    main = train_main()
    main(tiny_args(tmp_path / "a", 4, "train.log_every=2", "train.diagnostics_every=2"))
    logs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "diagnostics" in r] == [2, 4]
    diag = logs[-1]["diagnostics"]
    assert len(diag["prefix_psnr"]) == 4 and len(diag["quant_error"]) == 4 and "gain_mean" in diag
    final = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(final["per_step"]["residual_var"]) == 4 and "checker" in final
    agreement = final["per_step"]["seed_agreement"]   # the paper's noise: codes follow it
    assert len(agreement) == 4 and all(0 <= a <= 1 for a in agreement)
    assert f"codes fixed by the input alone {sum(agreement) / 4:.0%}" in capsys.readouterr().out
    assert (tmp_path / "a" / "step_diagnostics.png").is_file()
    # Throughput: one FLOPs-per-image count (tests/tokenizer/test_flops.py) times img/s
    per_image = [r["tflops"] / r["img_per_s"] for r in logs]
    assert per_image[0] > 0 and per_image == pytest.approx([per_image[0]] * len(logs))
    assert all(r["mfu"] == pytest.approx(r["tflops"] / 989.0) for r in logs)
    assert all(0 <= r["data_wait_frac"] <= 1 for r in logs)
    # A time budget already spent stops at the first check, then still saves and evaluates.
    metrics = main(tiny_args(tmp_path / "b", 200, "train.max_minutes=1e-6", "train.log_every=5"))
    assert metrics["step"] < 200 and (tmp_path / "b" / "tokenizer" / "tokenizer.safetensors").is_file()


def test_nonfinite_loss_or_gradients_skip_the_update_then_stop(tmp_path, monkeypatch):
    from unimodal.tokenizer.training import TokenizerTrainer

    real_step = TokenizerTrainer.train_step
    bad = {"steps": {3}}

    def poisoned(self, images):  # NaN images give a NaN loss and NaN gradients
        return real_step(self, images * float("nan") if self.step + 1 in bad["steps"] else images)

    monkeypatch.setattr(TokenizerTrainer, "train_step", poisoned)
    main = train_main()
    metrics = main(tiny_args(tmp_path / "a", 6, "train.log_every=1", "model.dead_code_after=1"))
    logs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped", False) for r in logs] == [False, False, True, False, False, False]
    assert logs[-1]["skipped_steps"] == 1 and metrics["psnr"] == metrics["psnr"]  # finite weights
    bad["steps"] = set(range(2, 100))
    with pytest.raises(FloatingPointError, match="3 steps in a row with a non-finite loss or gradients"):
        main(tiny_args(tmp_path / "b", 20, "train.max_nonfinite_steps=3", "model.dead_code_after=0"))


def test_one_rule_for_the_out_dir(tmp_path):
    """A fresh run refuses another run's folder (or replaces it with train.overwrite=true); a
    resume from an older checkpoint moves later checkpoints and final outputs aside, deleting
    nothing."""
    from unimodal.config import ConfigError

    main = train_main()
    keep = ["train.checkpoint_every=1", "train.keep_checkpoints=10", "train.eval_images=4"]
    main(tiny_args(tmp_path, 3, *keep))
    with pytest.raises(ConfigError, match="train.out_dir=.* already holds a run"):
        main(tiny_args(tmp_path, 3, *keep))
    main(tiny_args(tmp_path, 3, *keep) + ["--resume", str(tmp_path / "checkpoints/step_00000001")])
    superseded = list((tmp_path / "superseded").iterdir())
    assert len(superseded) == 1
    moved = superseded[0]
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]
    assert (moved / "metrics.json").is_file() and (moved / "tokenizer").is_dir()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step_")) \
        == ["step_00000001", "step_00000002", "step_00000003"]
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 3
    (tmp_path / "checkpoints" / "step_00000003.old").mkdir()  # a crash between renames
    (tmp_path / "checkpoints" / "step_00000003.old" / "x").write_text("stale")
    main(tiny_args(tmp_path, 2, *keep, "train.overwrite=true"))
    assert not (tmp_path / "checkpoints" / "step_00000003").exists()
    assert [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()] == [2]


def test_a_slow_loader_shows_in_data_wait_frac(tmp_path, monkeypatch):
    # Every batch arrives 3 s late: the loop spends most of its time waiting for the loader,
    # which the log must say (a tiny step takes well under 3 s, even on a loaded box).
    import time

    from unimodal.tokenizer import training

    real_batches = training._batches

    def late_batches(*args):
        for batch in real_batches(*args):
            time.sleep(3.0)
            yield batch
    monkeypatch.setattr(training, "_batches", late_batches)
    train_main()(tiny_args(tmp_path, 2, "train.log_every=2", "train.eval_images=8"))
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["data_wait_frac"] > 0.5
