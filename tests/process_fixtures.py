"""Child processes for the multi-process tests: a free port, a launch that leaves nothing behind, and
the losses a launched run logged.

A launcher (deepspeed, torchrun) forks its ranks; killing only the launcher on a timeout would
leave the ranks running, holding ports and CPU for the rest of the suite. Each launch gets its
own process group, and a timeout kills the whole group.

Warm children (`start_warm`, `run_warm`): `python SCRIPT ARGS` or `python -c CODE ARGS` run in a
process forked from a multiprocessing forkserver that has already imported torch, transformers and
the package (PRELOAD). The child sets the given environment and folder, runs the script or code
as `__main__` and exits with its code, its stdout and stderr caught in files: what a fresh
interpreter does, less the ~6 s of imports each fresh one spends on the 2-core box (most of a
tiny run; about a third of the suite's time went there). The forkserver forks before any torch
thread exists. A fresh interpreter's start stays covered where it is under test: the launcher
runs (`launch(..., launcher=True)`, every two-rank run), the tokenizer's torchrun run and
mixing/inspect.py's `--help` (help_fixtures.py). On a CUDA machine a warm child is a fresh
interpreter instead (`start_warm` says why).
"""

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from unimodal.objective_study.child_process import finish_forked_child

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port the OS says is free now: parallel test workers (pytest -n) never share one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_group(cmd: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    """Popen in a new session (its own process group), output merged into stdout as text."""
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kw)


def finish_group(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Wait for `proc`; past `timeout` kill its whole process group and fail with its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args[:4]}... still running after {timeout} s; killed its "
                             f"process group\n{(out + err)[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_group(cmd: list[str], env: dict[str, str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return finish_group(start_group(cmd, env, **kw), timeout)


# What every pretraining child imports at its start. torch._inductor.compile_fx: DeepSpeed's ZeRO
# optimizer check imports its Muon optimizer, whose torch.compile decorators import inductor.
PRELOAD = ["torch", "transformers.models.llama.configuration_llama", "unimodal.cli",
           "unimodal.pretraining.trainer", "torch._inductor.compile_fx"]


@lru_cache(maxsize=None)
def _warm_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _warm_child(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    os.setsid()  # a process group of its own: a timeout kills its children (loader workers) too
    os.chdir(cwd)
    if "OMP_NUM_THREADS" in env:  # OpenMP read the variable when the forkserver loaded torch
        import torch
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    finish_forked_child(argv, out, err, env)


@dataclass
class WarmChild:
    argv: list[str]
    process: multiprocessing.process.BaseProcess
    folder: Path    # its stdout and stderr files


@lru_cache(maxsize=None)
def _cuda_machine() -> bool:
    import torch

    return torch.cuda.is_available()


def start_warm(argv: list[str], env: dict[str, str],
               cwd: Path | str | None = None) -> WarmChild | subprocess.Popen:
    """`python *argv` (a script path or `-c CODE`, then its arguments) in a warm child (above);
    a fresh interpreter on a CUDA machine. There the forkserver's preload initialises CUDA (on an
    H100, 2026-12-06, a forked child's first CUDA call failed with "Cannot re-initialize CUDA in
    forked subprocess"), and the imports cost little beside a GPU run."""
    if _cuda_machine():
        return start_group([sys.executable, *argv], env, cwd=cwd)
    folder = Path(tempfile.mkdtemp(prefix="warm-child-"))
    process = _warm_context().Process(
        target=_warm_child, args=(list(argv), dict(env), str(cwd or os.getcwd()),
                                  str(folder / "stdout"), str(folder / "stderr")))
    process.start()
    return WarmChild(list(argv), process, folder)


def finish_warm(child: WarmChild, timeout: float) -> subprocess.CompletedProcess:
    """Wait for `child`; past `timeout` kill its process group and fail with its output."""
    if isinstance(child, subprocess.Popen):
        return finish_group(child, timeout)
    child.process.join(timeout)
    timed_out = child.process.is_alive()
    if timed_out:
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.join()
    out, err = ((child.folder / name).read_text() if (child.folder / name).exists() else ""
                for name in ("stdout", "stderr"))
    shutil.rmtree(child.folder, ignore_errors=True)
    if timed_out:
        raise AssertionError(f"{child.argv[:3]}... still running after {timeout} s; killed its "
                             f"process group\n{(out + err)[-3000:]}")
    return subprocess.CompletedProcess([sys.executable, *child.argv], child.process.exitcode,
                                       out, err)


def run_warm(argv: list[str], env: dict[str, str], timeout: float,
             cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    return finish_warm(start_warm(argv, env, cwd), timeout)


def run_script(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """`python *args` from the repository root in a warm child, with this environment plus `env`."""
    return run_warm(list(args), {**clean_env(), **(env or {})}, timeout, cwd=ROOT)


def clean_env() -> dict[str, str]:
    """os.environ without the rendezvous variables: an in-process run earlier in this pytest
    process may have set them, and a child would then reuse a port that is still taken."""
    rendezvous = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                  "MASTER_PORT"}
    return {k: v for k, v in os.environ.items() if k not in rendezvous}


def launch(config: Path, out: Path, *extra: str, procs: int = 1, launcher: bool | None = None,
           check: bool = True):
    """train/pretrain.py on `procs` CPU ranks (gloo). Under the DeepSpeed launcher (`deepspeed
    train/pretrain.py`, what users run) when `launcher` or `procs` > 1; one process on its own
    (`python train/pretrain.py`, in a warm child) otherwise: the launcher adds two Python
    processes that each import torch and DeepSpeed, seconds per run on a 2-core box, and the
    tests that check the launcher path itself ask for it."""
    env = {**clean_env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = [str(ROOT / "train/pretrain.py"), "--config", str(config), f"train.out_dir={out}", *extra]
    if launcher or (launcher is None and procs > 1):
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(procs),
               "--master_port", str(free_port()), *args]
        done = run_group(cmd, env, timeout=400)
    else:
        assert procs == 1, "more than one rank needs the launcher"
        done = run_warm(args, env, timeout=400)
    if check:
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        # The trainer keeps DeepSpeed from JIT-building its shared-memory op on the CPU (~24 s of
        # C++ per fresh environment); DeepSpeed prints this line whenever it loads the op.
        assert "deepspeed_shm_comm" not in done.stdout + done.stderr
    return done


def three_step_run(config: Path, text_model: Path, tok_dir: Path, sources: list[tuple],
                   out: Path, **model) -> list[dict]:
    """The scripts' end-to-end runs: a pretraining config over `sources` (model section `model`),
    three steps of train/pretrain.py that log and export at the end; returns the log, one record
    per step."""
    from unified_fixtures import write_pretrain_config

    write_pretrain_config(config, text_model, tok_dir, sources, model=model,
                          optim={"lr": 3.0e-3, "warmup_steps": 1},
                          train={"steps": 3, "log_every": 1, "checkpoint_every": 3, "ema_decay": 0},
                          deepspeed={"zero_optimization": {"stage": 1}})
    launch(config, out)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    return log


def losses(out: Path, key: str = "loss") -> dict[int, float]:
    """step -> loss (or another logged `key`); a resumed run's later records replace the earlier
    ones."""
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows}
