"""train/pretrain.py with the real DeepSpeed engine on CPU (gloo) on two ranks: ZeRO 2 through the
launcher, a two-rank run resumed on one rank through a universal checkpoint (and a planted pickle
stopping that conversion), two nodes of one process through the hostfile launcher, and a ZeRO 3
resume without unpickling code."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from process_fixtures import clean_env, finish_group, free_port, launch, losses, start_group
from unified_fixtures import ROOT

pytestmark = pytest.mark.slow  # end-to-end training runs (tests/conftest.py starts them first)


@pytest.fixture(scope="module")
def two_rank_run(tiny_config, tmp_path_factory) -> Path:
    """6 steps on 2 ranks (ZeRO 2) without EMA, checkpoints at steps 3 and 6; shared like
    straight_run (resuming it elsewhere leaves it as it was: a test checks that)."""
    out = tmp_path_factory.mktemp("two_ranks") / "two"
    launch(tiny_config, out, "train.ema_decay=0", procs=2)
    return out


def test_two_processes_zero2(two_rank_run):
    # The shared two-rank run (its own launch would repeat it): every step logged, each rank's
    # data position in each checkpoint, and the export.
    out = two_rank_run
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == \
        [1, 2, 3, 4, 5, 6]
    for step in (3, 6):
        ckpt = out / f"checkpoints/step_{step:08d}"
        assert (ckpt / "data_rank00000.json").is_file() and (ckpt / "data_rank00001.json").is_file()
    assert (out / "export/hf/model.safetensors").is_file()


def test_two_ranks_resume_on_one_through_a_universal_checkpoint(tiny_config, two_rank_run,
                                                                tmp_path):
    """2 ranks -> 1 rank: the loaded weights equal the 2-rank ZeRO checkpoint's, and training goes
    on with the saved LR schedule (the global batch kept by doubling gradient accumulation)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from unimodal.model.export import load_unified

    two, one = two_rank_run, tmp_path / "one"
    no_ema = "train.ema_decay=0"  # the export then holds the engine's weights (as in two_rank_run)
    ckpt = two / "checkpoints/step_00000003"
    done = launch(tiny_config, one, no_ema, "train.steps=3", "train.gradient_accumulation=2",
                  "--resume", str(ckpt))
    assert "written by 2 ranks, loading on 1" in done.stdout
    assert not (ckpt / "universal").exists()  # the source run is left as it was
    zero = get_fp32_state_dict_from_zero_checkpoint(str(two / "checkpoints"), tag=ckpt.name)
    loaded = load_unified(one / "export")[0].state_dict()
    assert len(zero) > 10
    for name, value in zero.items():
        assert torch.equal(loaded[name].float(), value.float()), name
    launch(tiny_config, one, no_ema, "train.gradient_accumulation=2", "--resume", str(ckpt))
    rows = {r["step"]: r for r in map(json.loads, (one / "log.jsonl").read_text().splitlines())}
    ref = {r["step"]: r for r in map(json.loads, (two / "log.jsonl").read_text().splitlines())}
    assert sorted(rows) == [4, 5, 6]
    for step in (4, 5, 6):
        assert rows[step]["lr"] == pytest.approx(ref[step]["lr"]) and math.isfinite(rows[step]["loss"])


def test_a_planted_pickle_stops_the_universal_conversion(tiny_config, two_rank_run, tmp_path):
    """The 2 -> 1 conversion reads the checkpoint through the same safe loader, and its failure
    stops the run with one clear cause instead of leaving ranks at a barrier."""
    from safe_loading_fixtures import plant_payload

    two, one = tmp_path / "two", tmp_path / "one"
    shutil.copytree(two_rank_run, two)  # the copy is planted, not the shared run
    ckpt = two / "checkpoints/step_00000003"
    marker = plant_payload(ckpt / "zero_pp_rank_1_mp_rank_00_optim_states.pt", tmp_path / "ran")
    done = launch(tiny_config, one, "train.ema_decay=0", "--resume", str(ckpt), check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "converting it to a universal checkpoint failed" in out
    assert "refused to load" in out and not marker.exists()


def test_two_nodes_of_one_process_through_the_hostfile_launcher(tiny_config, tmp_path):
    """The multi-node path of README: one launcher per node (--no_ssh --node_rank), a shared
    out_dir; each node's rank reads its own part of the data."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=1\nnode-b slots=1\n")
    out = tmp_path / "run"
    env = {**clean_env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    port = str(free_port())
    nodes = [start_group(
        [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile), "--no_ssh",
         "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", port,
         str(ROOT / "train/pretrain.py"), "--config", str(tiny_config), f"train.out_dir={out}",
         "train.steps=3"], env) for node in (0, 1)]
    done = [finish_group(node, timeout=400) for node in nodes]
    logs = [d.stdout + d.stderr for d in done]
    assert [d.returncode for d in done] == [0, 0], "\n".join(x[-3000:] for x in logs)
    assert "--node_rank=1" in logs[1]
    ckpt = out / "checkpoints/step_00000003"
    states = [json.loads((ckpt / f"data_rank{r:05d}.json").read_text()) for r in (0, 1)]
    assert [(s["config"]["rank"], s["config"]["world_size"]) for s in states] == [(0, 2), (1, 2)]
    assert states[0]["readers"] != states[1]["readers"]
    assert sorted(losses(out)) == [1, 2, 3]


def test_resume_loads_zero3_without_unpickling_code(tiny_config, tmp_path):
    """Resume goes through the weights_only loader for DeepSpeed's own files under ZeRO 3 too
    (its partitioned files). ZeRO 1 and 2 share one DeepSpeed optimizer and its checkpoint files
    (stage_1_and_2.py): stage 2, the tests' default, resumes in test_trainer.py, where a planted
    pickle in those files is refused."""
    stage = 3
    out = tmp_path / f"zero{stage}"
    zero = [f"deepspeed.zero_optimization.stage={stage}", "train.ema_decay=0"]
    launch(tiny_config, out, "train.steps=3", *zero)
    done = launch(tiny_config, out, "train.steps=4", *zero, "--resume")
    assert "resumed from" in done.stdout + done.stderr
    assert sorted(losses(out)) == [1, 2, 3, 4]
