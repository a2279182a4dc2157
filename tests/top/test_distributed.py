"""Rank-aware helpers (unimodal/distributed.py): rank and world size from the launcher's
environment, printing on rank 0 only, device choice, the one-process rendezvous, and two gloo
ranks that join from the environment and agree on any_rank."""

import os

import pytest
import torch

from process_fixtures import ROOT, clean_env, finish_warm, free_port, start_warm
from unimodal import distributed as D

RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "OMPI_COMM_WORLD_RANK")


@pytest.fixture
def env(monkeypatch):
    """No rendezvous variables; whatever a test (or the code under test) sets is undone after."""
    for key in RENDEZVOUS:
        monkeypatch.setenv(key, "recorded")   # so that monkeypatch restores the original state
        monkeypatch.delenv(key)
    return monkeypatch


def test_rank_and_world_size_come_from_the_environment(env, capsys):
    assert (D.rank(), D.world_size(), D.local_rank(), D.is_main()) == (0, 1, 0, True)
    assert not D.is_distributed()
    D.print0("shown", 1)
    env.setenv("RANK", "3")
    env.setenv("WORLD_SIZE", "4")
    env.setenv("LOCAL_RANK", "1")
    assert (D.rank(), D.world_size(), D.local_rank(), D.is_main()) == (3, 4, 1, False)
    D.print0("hidden")
    assert capsys.readouterr().out == "shown 1\n"
    # without a process group the collectives are local
    assert D.any_rank(True, torch.device("cpu")) and not D.any_rank(False, torch.device("cpu"))
    D.barrier()
    D.shutdown()


def test_pick_device(env):
    assert D.pick_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        env.setenv("LOCAL_RANK", "0")
        assert D.pick_device("auto") == torch.device("cuda:0")
    else:
        assert D.pick_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match=r"device='cuda:0' requested but CUDA is not available"):
            D.pick_device("cuda")


def test_single_process_env_fills_only_what_no_launcher_set(env):
    assert D.init_from_env(torch.device("cpu")) is False            # WORLD_SIZE unset: one process
    D.single_process_env()
    assert {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                       "MASTER_ADDR")} == {
        "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1"}
    assert 0 < int(os.environ["MASTER_PORT"]) < 65536
    assert D.init_from_env(torch.device("cpu")) is False            # WORLD_SIZE=1: no group
    env.setenv("RANK", "5")
    env.setenv("MASTER_PORT", "1234")
    D.single_process_env()                                          # a launcher's values stay
    assert os.environ["RANK"] == "5" and os.environ["MASTER_PORT"] == "1234"
    env.delenv("RANK")
    env.setenv("OMPI_COMM_WORLD_RANK", "0")                         # an MPI launcher counts too
    D.single_process_env()
    assert "RANK" not in os.environ


CHILD = """
import torch
from unimodal import distributed as D
cpu = torch.device("cpu")
assert D.init_from_env(cpu) and D.is_distributed() and D.init_from_env(cpu)
print(D.rank(), D.world_size(), D.is_main(), D.any_rank(D.rank() == 1, cpu), D.any_rank(False, cpu))
D.shutdown()
print("after", D.is_distributed(), flush=True)
"""


def test_two_gloo_ranks_join_from_the_environment_and_agree():
    port = str(free_port())
    procs = [start_warm(["-c", CHILD],
                         {**clean_env(), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                          "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                          "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in range(2)]
    outs = [finish_warm(p, timeout=120) for p in procs]
    for r, done in enumerate(outs):
        assert done.returncode == 0, done.stderr[-2000:]
        # rank 1's flag reaches rank 0; a flag set nowhere stays False
        assert done.stdout.splitlines() == [f"{r} 2 {r == 0} True False", "after False"]
