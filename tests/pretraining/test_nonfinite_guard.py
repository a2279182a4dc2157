"""The non-finite guard through the real DeepSpeed engine on CPU (gloo): a NaN gradient or loss
skips the step (also when only one of two ranks sees it: every rank skips, the weights stay
equal), a streak stops the run, and an optimizer without an overflow check is caught before its
weights are saved."""

import json
import math
from pathlib import Path

import pytest
import torch

from process_fixtures import clean_env, finish_warm, free_port, start_warm
from unimodal.config import load_config
from unimodal.pretraining.config import PretrainConfig

pytestmark = pytest.mark.slow  # end-to-end training runs (tests/conftest.py starts them first)


def run_with_nan(config: str, out: str, where: str, bad_attempts: list[int], nan_ranks: str,
                 *overrides: str):
    """Pretraining with NaN injected on the attempts numbered in `bad_attempts` (1-based; a
    skipped step is retried as the next attempt) on the ranks in `nan_ranks` ("all" or "1,3"):
    `where` = "grad" makes gradients NaN with a finite loss, "loss" makes the loss NaN. Each rank
    writes <out>/rank<r>_end.pt: whether each step's update was applied, the skips by cause, and
    its final weights. Run in child processes (`_launch_nan_run`): DeepSpeed keeps global state
    per process."""
    from unimodal import distributed as D
    from unimodal.pretraining.trainer import Pretrainer

    cfg = load_config(PretrainConfig, config,
                      [f"train.out_dir={out}", "train.tensorboard=false", *overrides])
    trainer = Pretrainer(cfg)
    attempts = [0]

    def poison(value):
        attempts[0] += 1
        return value * float("nan") if attempts[0] in bad_attempts else value

    if nan_ranks == "all" or str(trainer.rank) in nan_ranks.split(","):
        if where == "grad":
            trainer.model.backbone.model.layers[0].mlp.up_proj.weight.register_hook(poison)
        else:
            trainer.model.backbone.model.embed_tokens.register_forward_hook(
                lambda m, i, o: poison(o))
    applied, step_applied = [], trainer.guard.step_applied

    def record(*args):
        applied.append(step_applied(*args))
        return applied[-1]

    trainer.guard.step_applied = record
    try:
        trainer.run()
        state = trainer.model.state_dict()
        assert all(torch.isfinite(v).all() for v in state.values()), "non-finite weights"
        torch.save({"applied": applied, "bad_losses": trainer.guard.bad_losses.total,
                    "bad_grads": trainer.guard.bad_grads.total,
                    "weights": {k: v.detach().clone() for k, v in state.items()}},
                   Path(out) / f"rank{trainer.rank}_end.pt")
    finally:
        D.shutdown()


def _launch_nan_run(config, out, where, bad_attempts, *overrides, ranks: int = 1,
                    nan_ranks: str = "all"):
    """`run_with_nan` in `ranks` processes (one process group over gloo when ranks > 1); the
    completed process of one rank, or the list of all of them."""
    # This folder for this module, tests/ for the fixture modules it imports.
    code = ("import sys; sys.path[:0] = %r; from test_nonfinite_guard import run_with_nan; "
            "run_with_nan(*sys.argv[1:4], [int(x) for x in sys.argv[4].split(',')], "
            "*sys.argv[5:])" % [str(Path(__file__).parent), str(Path(__file__).parents[1])])
    env = {**clean_env(), "OMP_NUM_THREADS": "1"}
    if ranks > 1:  # the variables a launcher sets (Pretrainer joins the group they describe)
        env.update(WORLD_SIZE=str(ranks), LOCAL_WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(free_port()))
    argv = ["-c", code, str(config), str(out), where, ",".join(map(str, bad_attempts)), nan_ranks,
            *overrides]
    procs = [start_warm(argv, {**env, "RANK": str(r), "LOCAL_RANK": str(r)} if ranks > 1 else env)
             for r in range(ranks)]
    done = [finish_warm(proc, timeout=300) for proc in procs]
    return done[0] if ranks == 1 else done


# One skipped step is checked on two ranks below (one launch for both: the skip, its report
# and the step count); these two check that a streak stops the run.
def test_nonfinite_gradients_in_a_row_stop_the_run(tiny_config, tmp_path):
    done = _launch_nan_run(tiny_config, tmp_path / "b", "grad", range(4, 100), "train.steps=8",
                           "train.max_nonfinite_steps=3")
    assert done.returncode != 0
    assert "3 steps in a row with non-finite gradients" in done.stderr
    assert "step_00000003" in done.stderr and not (tmp_path / "b/export").exists()


def test_nonfinite_losses_in_a_row_stop_the_run(tiny_config, tmp_path):
    done = _launch_nan_run(tiny_config, tmp_path / "b", "loss", range(4, 100), "train.steps=8",
                           "train.max_nonfinite_steps=2")
    assert done.returncode != 0 and "2 steps in a row with a non-finite loss" in done.stderr
    assert "step_00000003" in done.stderr


@pytest.mark.parametrize("where", ["grad", "loss"])
def test_a_nan_on_one_rank_skips_the_step_on_every_rank(tiny_config, tmp_path, where):
    """Two ranks (ZeRO 2), NaN on rank 1 only at its 3rd attempt: both ranks skip that update
    and name the same cause (rank 0 reports it), the run still makes its 4 steps (5 attempts:
    the skipped one does not count), and the weights stay finite and bit-identical across the
    ranks."""
    out = tmp_path / "run"
    done = _launch_nan_run(tiny_config, out, where, [3], "train.steps=4", "train.ema_decay=0",
                           "train.checkpoint_every=100", ranks=2, nan_ranks="1")
    assert [d.returncode for d in done] == [0, 0], "\n".join(d.stderr[-3000:] for d in done)
    what = {"grad": "non-finite gradients", "loss": "a non-finite loss"}[where]
    assert f"step 3: {what}, update skipped (1 in a row" in done[0].stdout + done[0].stderr
    ends = [torch.load(out / f"rank{r}_end.pt", weights_only=True) for r in (0, 1)]
    cause = {"grad": (0, 1), "loss": (1, 0)}[where]   # (bad losses, bad gradients)
    for end in ends:
        assert end["applied"] == [True, True, False, True, True]
        assert (end["bad_losses"], end["bad_grads"]) == cause
    assert ends[0]["weights"].keys() == ends[1]["weights"].keys()
    for name, weight in ends[0]["weights"].items():
        assert torch.isfinite(weight).all() and torch.equal(weight, ends[1]["weights"][name]), name
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and log[-1]["skipped_steps"] == 1
    assert all(math.isfinite(r["loss"]) for r in log)


def test_an_optimizer_without_an_overflow_check_stops_before_saving_bad_weights(tiny_config,
                                                                              tmp_path):
    """ZeRO 0 in fp32 hands DeepSpeed a plain AdamW, which applies a NaN update: the weight check
    of the next log/checkpoint step stops the run, and no checkpoint holds the bad weights."""
    done = _launch_nan_run(tiny_config, tmp_path / "a", "grad", [3], "train.steps=6",
                           "deepspeed.zero_optimization.stage=0", "train.log_every=2",
                           "train.checkpoint_every=2")
    assert done.returncode != 0 and "the optimizer applied an update with non-finite" in done.stderr
    assert "at or before step 4" in done.stderr and "step_00000002" in done.stderr
    assert sorted(p.name for p in (tmp_path / "a/checkpoints").iterdir()) == ["step_00000002"]
