"""Checkpoint folders written atomically, and loading files without running code from them.

A crash mid-write leaves only a `.tmp` folder, which `latest_checkpoint` ignores and the next
save replaces; `prune_checkpoints` keeps the newest N `step_XXXXXXXX` folders.

Files a user hands us (checkpoints, reference statistics, pretrained weights) are never unpickled
with arbitrary globals: `load_torch_file` is `torch.load(weights_only=True)` (tensors, numbers,
strings and containers only), and `weights_only_torch_load` applies the same rule to a library's
own loads (DeepSpeed's checkpoint engine calls `torch.load(weights_only=False)`).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch

from unimodal import distributed as D

_STEP_DIR = re.compile(r"^step_(\d{8})$")


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


@contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Yield a scratch folder; on success it replaces `final` in one rename."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)  # left by a crash between the two renames below
    tmp.mkdir(parents=True)
    yield tmp
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def step_of(checkpoint: str | Path) -> int:
    m = _STEP_DIR.match(Path(checkpoint).name)
    if m is None:
        raise ValueError(f"{checkpoint}: not a step_XXXXXXXX checkpoint folder")
    return int(m.group(1))


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    if keep <= 0:
        return
    for _, path in list_checkpoints(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def saved_world_size(checkpoint: Path) -> int:
    """How many ranks wrote a pretraining checkpoint (one data-stream file each)."""
    n = len(list(checkpoint.glob("data_rank*.json")))
    if n == 0:
        raise FileNotFoundError(f"{checkpoint}: no data_rank*.json; not a pretraining "
                                "checkpoint folder (step_XXXXXXXX under <out_dir>/checkpoints)")
    return n


class UnsafeFileError(ValueError):
    """A file holds pickled Python objects beyond tensors and plain data; it was not loaded."""


def load_torch_file(path: str | Path, what: str, map_location: str | torch.device = "cpu",
                    allowed_globals: Sequence[Any] = ()) -> Any:
    """`torch.load(weights_only=True)`: a crafted pickle cannot run code; refusals name the file."""
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line),
                      first[0] if first else "")
        raise UnsafeFileError(
            f"{what} {path}: refused to load, it holds Python objects beyond tensors and plain "
            f"data ({detail.strip()[:200]}); loading it could run code. Convert it to tensors "
            "(or .npz / .safetensors) from a source you trust.") from None


def deepspeed_checkpoint_globals() -> list[Any]:
    """The few DeepSpeed classes its own checkpoints pickle (besides tensors and containers)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # Plain records (attributes only): rebuilding them runs no code beyond setting fields.
    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_torch_load(allowed_globals: Sequence[Any] = ()) -> Iterator[None]:
    """Within the block every `torch.load` call uses weights_only=True, whatever the caller asked.

    For libraries that load with weights_only=False (DeepSpeed's checkpoint engine). Not thread
    safe: meant for a resume, which runs before training starts.
    """
    original = torch.load

    def safe_load(f, map_location=None, *args, **kwargs):
        kwargs.pop("weights_only", None)
        try:
            with torch.serialization.safe_globals(list(allowed_globals)):
                return original(f, map_location=map_location, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError as err:
            raise UnsafeFileError(f"{f}: refused to load, it holds Python objects beyond tensors "
                                  f"and plain data; loading it could run code ({str(err)[:200]})"
                                  ) from None

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


class NonFiniteStreak:
    """Skipped updates in a row (non-finite loss or gradients): each is reported, and `limit` in
    a row stop the run with an error naming the last good checkpoint under `ckpt_root`."""

    def __init__(self, limit: int, ckpt_root: str | Path, what: str):
        self.limit, self.ckpt_root, self.what = limit, Path(ckpt_root), what
        self.in_a_row = self.total = 0

    def good(self) -> None:
        self.in_a_row = 0

    def skipped(self, step: int, report) -> None:
        """Count one skipped update at `step`; `report(message)` prints it (rank 0)."""
        self.in_a_row += 1
        self.total += 1
        report(f"step {step}: {self.what}, update skipped ({self.in_a_row} in a row, "
               f"{self.total} in all)")
        if self.in_a_row >= self.limit:
            raise FloatingPointError(
                f"{self.in_a_row} steps in a row with {self.what} at step {step}; the last good "
                f"checkpoint is {latest_checkpoint(self.ckpt_root)}")


# --- one rule for a run's output folder -------------------------------------------------------
# A fresh run refuses an out_dir that holds another run's files, unless overwrite is set (then
# they are deleted). A resume from step k moves the checkpoints after k, and the previous run's
# final outputs, into <out_dir>/superseded/<time>/: nothing is deleted, nothing pruned by mistake,
# and the final outputs always belong to the run that wrote them. Both trainers start through
# `run_in_out_dir`.

Trainer = TypeVar("Trainer")
Result = TypeVar("Result")


def run_in_out_dir(out_dir: str | Path, run_files: Sequence[str], overwrite: bool,
                   build: Callable[[], Trainer], train: Callable[[Trainer], Result],
                   resume: Callable[[Trainer], None] | None = None) -> Result:
    """A training run's start and end, the same for every trainer: a fresh run refuses another
    run's files in out_dir before anything is built; then `build()` (which joins the process
    group); then `resume(trainer)`, or with overwrite rank 0 clears the old files while the others
    wait; then `train(trainer)`, and the process group is shut down however that ends."""
    if resume is None and not overwrite:  # refuse before building anything
        check_fresh_out_dir(out_dir, run_files, overwrite=False)
    trainer = build()
    if resume is not None:
        resume(trainer)
    elif overwrite:
        if D.is_main():
            check_fresh_out_dir(out_dir, run_files, overwrite=True)
        D.barrier()
    try:
        return train(trainer)
    finally:
        D.shutdown()


def check_fresh_out_dir(out_dir: str | Path, run_files: Sequence[str], overwrite: bool,
                        key: str = "train.out_dir") -> None:
    """Before a run without --resume: refuse (or, with overwrite, clear) another run's files."""
    out = Path(out_dir)
    found = [name for name in run_files if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        from unimodal.config import ConfigError

        raise ConfigError(f"{key}={out} already holds a run ({', '.join(found)}): pass --resume "
                          "to continue it, train.overwrite=true to replace it, or another "
                          f"{key}")
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def supersede_after(out_dir: str | Path, checkpoint: str | Path, final_outputs: Sequence[str],
                    step_folders: Sequence[str] = ()) -> list[Path]:
    """Before resuming from `checkpoint` (step k): move later checkpoints (and the step_X
    folders after k in each of `step_folders`, e.g. periodic exports) and the final outputs into
    <out_dir>/superseded/<time>/. Returns where they went. A checkpoint of another run (outside
    out_dir, e.g. resumed on a different number of GPUs) leaves that run's folders untouched."""
    import time

    out, k = Path(out_dir), step_of(checkpoint)
    own = Path(checkpoint).resolve().parent
    roots = [own] if own.is_relative_to(out.resolve()) else []
    later = [p for root in (*roots, *(out / f for f in step_folders))
             for step, p in list_checkpoints(root) if step > k]
    stale = [out / name for name in final_outputs if (out / name).exists()]
    if not later and not stale:
        return []
    target = out / "superseded" / time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in later + stale:
        dest = target / path.resolve().relative_to(out.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        moved.append(dest)
    return moved
