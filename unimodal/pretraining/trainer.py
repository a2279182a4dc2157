"""DeepSpeed pretraining loop of the unified model (train/pretrain.py is the thin entry point).

Design choices, one line each:
- The model is plain PyTorch (`UnifiedModel`); DeepSpeed wraps it from outside with a torch AdamW
  and our warmup + cosine LambdaLR (optimizer.py).
- One optimizer step = `train.gradient_accumulation` micro-batches of `data.rows_per_batch` packed
  rows of `data.seq_len` tokens per rank.
- No host sync per step: losses and token counts are summed on the device and read on log steps.
- A non-finite loss or gradient never reaches the weights, and is found without a per-step read:
  the step is skipped by DeepSpeed's own overflow check (nonfinite_guard.py says how);
  `train.max_nonfinite_steps` skipped steps in a row stop the run, and since nothing is saved
  after a bad step the last checkpoint stays good.
- Checkpoints: DeepSpeed's own (weights, optimizer, LR schedule) in `step_XXXXXXXX.tmp`, plus each
  rank's data-stream state and rank 0's EMA, renamed to `step_XXXXXXXX` once complete; the newest
  `train.keep_checkpoints` are kept.
- Resume on the same number of ranks is exact (weights, optimizer, schedule, data position). On a
  different number (2 GPUs -> 1, or a bigger cluster), rank 0 first converts the checkpoint once
  into DeepSpeed's universal format (`<out_dir>/universal/<step>`), which every ZeRO stage loads at any
  data-parallel degree; the data stream cannot be re-split exactly, so it restarts (said in the log).
- The consolidated export (`<out_dir>/export`, EMA weights when EMA is on) is what eval/sample.py
  loads: Hugging Face Llama format + our modules + vocabulary + image tokenizer.
- Rank 0 logs: progress bar, log.jsonl, TensorBoard: per-modality losses, lr, grad norm, tokens/s,
  TFLOP/s, MFU and the cumulative `train_flops` (flops.py states the formula; checkpointed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from unimodal import distributed as D
from unimodal.checkpointing import (atomic_folder, deepspeed_checkpoint_globals,
                                    latest_checkpoint, prune_checkpoints, run_in_out_dir,
                                    saved_world_size, step_dir_name, supersede_after,
                                    weights_only_torch_load)

# What a run writes into train.out_dir, and which of it describes the run's end.
RUN_FILES = ("log.jsonl", "checkpoints", "export", "exports", "tensorboard", "pretrain_config.yaml",
             "universal")
FINAL_OUTPUTS = ("export",)
from unimodal.config import save_config
from unimodal.data.mixture import PackedBatchStream
from unimodal.model.export import build_unified, save_unified
from unimodal.model.float8 import convert_layers_to_float8
from unimodal.model.modalities import loss_keys
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.ema import EMA
from unimodal.pretraining.flops import layer_parameter_count, step_flops
from unimodal.pretraining.nonfinite_guard import NonFiniteGuard
from unimodal.pretraining.optimizer import build_optimizer


class StoppedEarly(RuntimeError):
    """`train.stop_after` was reached: the run ends like a crash (no export), so tests can check
    that `--resume` repeats an uninterrupted run. An exception, not SystemExit: a library must
    not end the process that embeds it."""


class Pretrainer:
    def __init__(self, cfg: PretrainConfig, stream=None, load_universal: bool = False):
        """`stream` replaces the configured data (benchmarks feed synthetic batches);
        `load_universal` prepares the engine to resume a checkpoint of another world size."""
        cuda = torch.cuda.is_available()
        if not cuda:
            # Known CPU noise, said once here instead: DeepSpeed would warn that it fell back to
            # the CPU accelerator, and torch's extension loader that there is no CUDA runtime.
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        import deepspeed

        if not cuda:
            # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce op (C++, about 24 s
            # on 2 cores) the first time a new environment starts a process group; only
            # DeepSpeed-Inference's inference_all_reduce uses it, never training (gloo does the
            # collectives). Marked incompatible, it is not built. DeepSpeed keeps this probed
            # dict in its module so that edits to it persist.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

        self.cfg = cfg
        run = cfg.train
        D.single_process_env()  # plain `python train/pretrain.py` works without a launcher
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device(f"cuda:{D.local_rank()}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        torch.manual_seed(run.seed)  # identical initial weights on every rank
        model, self.tokenizer = build_unified(cfg.model, device="cpu")
        model.backbone.gradient_checkpointing = run.activation_checkpointing
        if cfg.model.fp8:  # before compiling: inductor fuses the float8 casts into the layers
            convert_layers_to_float8(model.backbone, cfg.model.fp8)
        if run.compile:
            for layer in model.backbone.model.layers:
                layer.compile()
        self.vocab = model.vocab
        opt, sched = build_optimizer(model, cfg)
        self.ds_config = cfg.deepspeed_config(self.world)
        if load_universal:
            self.ds_config["checkpoint"] = {**self.ds_config.get("checkpoint", {}),
                                            "load_universal": True}
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=self.ds_config)
        self.model = self.engine.module
        self.layer_params = layer_parameter_count(self.model)  # once: not per micro-batch
        # loss, text_loss, image_loss, then {name}_loss per further modality (the vocabulary's)
        self.loss_keys = loss_keys(self.model.vocab)
        # further modalities' codes at non-block positions go through the full head, like text
        self.head_token_keys = [f"{m.name}_tokens" for m in self.model.vocab.modalities[1:]]
        self.ema = EMA(self.model, run.ema_decay) if run.ema_decay > 0 else None
        # Pinned batches let the host-to-GPU copies in _to_device run asynchronously.
        self.stream = stream if stream is not None else PackedBatchStream(
            cfg.data, self.vocab, self.tokenizer.cfg.latent_dim, rank=self.rank,
            world_size=self.world, pin_memory=cuda, image_objective=cfg.model.image_objective)
        self.out_dir = Path(run.out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.step = 0
        self.train_flops = 0.0   # cumulative model FLOPs, all ranks; logged and checkpointed
        self.window = self._fresh_window()
        self.guard = NonFiniteGuard(run.max_nonfinite_steps, self.ckpt_root, self.device)

    # --- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        tag = step_dir_name(self.step)
        tmp = self.ckpt_root / f"{tag}.tmp"
        if self.rank == 0:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
        D.barrier()
        # The universal-checkpoint marker lets ds_to_universal convert this checkpoint for a
        # resume on another number of ranks (a plain data-parallel model needs no more than it).
        from deepspeed.checkpoint.constants import (UNIVERSAL_CHECKPOINT_INFO,
                                                    UNIVERSAL_CHECKPOINT_VERSION_KEY,
                                                    UNIVERSAL_CHECKPOINT_VERSION_VALUE)
        # The FLOPs of the steps since the last log step belong to this checkpoint too.
        flops = self.train_flops + self._window_flops(self.window)
        client = {"step": self.step, "world_size": self.world, "train_flops": flops,
                  UNIVERSAL_CHECKPOINT_INFO: {
            UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}}
        self.engine.save_checkpoint(str(self.ckpt_root), tag=tmp.name, client_state=client,
                                    save_latest=False)
        # Plain JSON: a resume must never unpickle anything from the checkpoint folder.
        (tmp / f"data_rank{self.rank:05d}.json").write_text(json.dumps(self.stream.state_dict()))
        if self.rank == 0 and self.ema is not None:
            self.ema.save(tmp / "ema.safetensors")
        D.barrier()
        final = self.ckpt_root / tag
        if self.rank == 0:
            save_config(self.cfg, tmp / "pretrain_config.yaml")
            os.replace(tmp, final)
            prune_checkpoints(self.ckpt_root, self.cfg.train.keep_checkpoints)
        D.barrier()
        return final

    def resume(self, path: Path | None) -> None:
        """Load `path` (from `resolve_resume`); None = nothing to resume, start from scratch."""
        if path is None:
            D.print0(f"--resume: no checkpoint under {self.ckpt_root}; starting from scratch")
            return
        saved_world = saved_world_size(path)
        same_world = saved_world == self.world
        if same_world != (not self.ds_config.get("checkpoint", {}).get("load_universal")):
            raise RuntimeError(f"--resume {path}: the engine was built for a "
                               f"{'different' if same_world else 'same'}-world-size resume")
        if same_world:
            load_dir, tag = path.parent, path.name
        else:
            load_dir, tag = self._universal(path)
            D.print0(f"--resume {path}: written by {saved_world} ranks, loading on {self.world} "
                     f"through the universal checkpoint {load_dir / tag}")
        # DeepSpeed loads its files with weights_only=False; force the safe loader under it.
        with weights_only_torch_load(deepspeed_checkpoint_globals()):
            _, client = self.engine.load_checkpoint(str(load_dir), tag=tag)
        if client is None:
            raise FileNotFoundError(f"--resume {path}: DeepSpeed found no checkpoint there")
        self.step = int(client["step"])
        self.train_flops = float(client.get("train_flops", 0.0))
        if same_world:
            self.stream.load_state_dict(json.loads(
                (path / f"data_rank{self.rank:05d}.json").read_text()))
        else:
            D.print0(f"--resume {path}: the data stream of {saved_world} ranks cannot be split "
                     f"exactly over {self.world}; each rank's stream starts from its beginning")
        if self.ema is not None:
            self.ema.load(path / "ema.safetensors")
        # Only once everything loaded: a failed resume leaves the folder as it was.
        if self.rank == 0:
            for moved in supersede_after(self.out_dir, path, FINAL_OUTPUTS, ["exports"]):
                D.print0(f"--resume {path.name}: moved aside {moved}")
        D.barrier()
        D.print0(f"resumed from {path} at step {self.step}")

    def _universal(self, path: Path) -> tuple[Path, str]:
        """Rank 0 converts `path` once into <out_dir>/universal/<step> (the source is left as it
        is); returns DeepSpeed's (load_dir, tag) for it."""
        load_dir, tag = self.out_dir / "universal", path.name
        marker = load_dir / tag / "source.txt"
        source = str(path.resolve())
        failure = None
        if self.rank == 0 and not (marker.is_file() and marker.read_text() == source):
            from deepspeed.checkpoint import ds_to_universal

            D.print0(f"converting {path} to a universal checkpoint in {load_dir / tag} ...")
            try:
                with atomic_folder(load_dir / tag) as tmp:
                    # One worker: no process pool forked from a rank that holds CUDA/NCCL state.
                    args = argparse.Namespace(
                        input_folder=str(path), output_folder=str(tmp), num_extract_workers=1,
                        num_merge_workers=1, keep_temp_folder=False, strict=True,
                        inject_missing_state=False)
                    with weights_only_torch_load(deepspeed_checkpoint_globals()):
                        ds_to_universal.main(args)
                    (tmp / "source.txt").write_text(source)
            except Exception as error:  # every rank stops, instead of waiting at a barrier
                failure = error
        if D.any_rank(failure is not None, self.device):
            raise RuntimeError(f"--resume {path}: converting it to a universal checkpoint failed"
                               + (f": {failure}" if failure else " on rank 0")) from failure
        return load_dir, tag

    def export(self, folder: Path | None = None) -> Path:
        """The consolidated checkpoint (EMA weights when EMA is on) that eval scripts load."""
        folder = folder or self.out_dir / "export"
        if self.rank == 0:
            state = self.ema.merged_state(self.model) if self.ema is not None else None
            with atomic_folder(folder) as tmp:
                save_unified(self.model, self.tokenizer, tmp, state_dict=state)
        D.barrier()
        return folder

    # --- the loop --------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()}

    def run(self) -> dict:
        cfg, run = self.cfg, self.cfg.train
        is_main = self.rank == 0
        if is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "pretrain_config.yaml")
        log_file = open(self.out_dir / "log.jsonl", "a") if is_main else None
        writer = None
        if is_main and run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        bar = tqdm(total=run.steps, initial=self.step, disable=not is_main, desc="pretrain",
                   dynamic_ncols=True)
        batches = iter(self.stream)
        self.window = window = self._fresh_window()
        self.run_start = time.perf_counter()
        sums: dict[str, float] = {}
        last: dict = {}
        self.engine.train()
        pending: dict = {}   # this optimizer step's loss sums, kept only if its update lands
        while self.step < run.steps:
            wait_start = time.perf_counter()
            batch = next(batches)
            window["data_wait"] += time.perf_counter() - wait_start  # host blocked on the loader
            batch = self._to_device(batch)
            out = self.engine(batch)
            self.engine.backward(self.guard.loss_for_backward(out["loss"]))
            boundary = self.engine.is_gradient_accumulation_boundary()
            self.engine.step()
            # FLOPs are linear in these counts (spent whether or not the update lands): sum them
            # on the device, read them on log steps.
            window["tokens"] += batch["input_ids"].numel()
            window["text"] += sum((out[k] for k in self.head_token_keys), out["text_tokens"])
            window["code"] += out["image_tokens"]
            window["block"] += (batch["block_ids"] >= 0).sum()
            for key in self.loss_keys:  # summed on the device: no sync
                pending[key] = pending.get(key, 0.0) + out[key].detach().float()
            pending["micro"] = pending.get("micro", 0) + 1
            if not boundary:
                continue
            step_sums, pending = pending, {}
            if not self.guard.step_applied(self.engine, self.step + 1, D.print0):
                continue  # skipped (non-finite loss or gradients): the step does not count
            for key, value in step_sums.items():
                sums[key] = sums.get(key, 0) + value
            self.step += 1
            if self.ema is not None:
                self.ema.update(self.model)
            bar.update(1)
            log_now = self.step % run.log_every == 0 or self.step == run.steps
            save_now = self.step % run.checkpoint_every == 0 or self.step == run.steps
            export_now = bool(run.export_every) and self.step % run.export_every == 0 \
                and self.step < run.steps
            if log_now or save_now or export_now:
                self.guard.check_weights(self.model, self.step)  # nothing is logged or saved after a bad step
            if log_now:
                last = self._log(sums, window, log_file, writer, bar)
                sums = {}
            if save_now:
                self.save_checkpoint()
            if export_now:
                self.export(self.out_dir / "exports" / step_dir_name(self.step))
            if run.stop_after and self.step >= run.stop_after:
                bar.close()
                if log_file:
                    log_file.close()
                raise StoppedEarly(f"train.stop_after={run.stop_after}: stopping at step "
                                   f"{self.step} without an export, as a crash would")
        bar.close()
        if log_file:
            log_file.close()
        if writer:
            writer.close()
        export = self.export()
        if hasattr(self.stream, "bad_data_summary"):
            D.print0(self.stream.bad_data_summary())
        D.print0(f"done: {self.step} steps; export -> {export}")
        return last

    def _fresh_window(self) -> dict:
        zero = torch.zeros((), dtype=torch.long, device=self.device)
        return {"tokens": 0, "text": zero, "code": zero.clone(), "block": zero.clone(),
                "data_wait": 0.0, "time": time.perf_counter()}

    def _window_flops(self, window) -> float:
        """Model FLOPs of all ranks since the window opened (reads the device counters)."""
        return self.world * step_flops(
            self.model, window["tokens"], int(window["text"]), int(window["code"]),
            int(window["block"]), self.cfg.data.seq_len, self.layer_params)

    def _log(self, sums, window, log_file, writer, bar) -> dict:
        elapsed = time.perf_counter() - window["time"]
        n = max(sums.get("micro", 1), 1)
        flops = self._window_flops(window)
        self.train_flops += flops
        tflops = flops / max(elapsed, 1e-9) / 1e12
        record = {"step": self.step, "elapsed_s": time.perf_counter() - self.run_start,
                  "train_flops": self.train_flops,
                  **{k: float(sums[k]) / n for k in self.loss_keys if k in sums},
                  "lr": self.scheduler.get_last_lr()[0],
                  "grad_norm": float(self.engine.get_global_grad_norm() or 0.0),
                  "tokens_per_s": window["tokens"] * self.world / max(elapsed, 1e-9),
                  # near 1: the loader limits the run (more data.num_workers); near 0: the model
                  "data_wait_frac": window["data_wait"] / max(elapsed, 1e-9),
                  "tflops": tflops, "mfu": tflops / (self.cfg.train.peak_tflops * self.world),
                  "skipped_steps": self.guard.skipped}
        if hasattr(self.stream, "bad_data_counts"):  # rank 0's share of the data
            counts = self.stream.bad_data_counts()
            record["bad_samples"] = counts["bad"]
            record["too_long_samples"] = counts["too_long"]
        if self.device.type == "cuda":
            record["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        window.update(self._fresh_window())
        bar.set_postfix({k: f"{record[k]:.3g}" for k in (*self.loss_keys, "tokens_per_s", "mfu")
                         if k in record})
        if log_file:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if writer:
            for k, v in record.items():
                if isinstance(v, dict):  # per-source counts
                    for source, count in v.items():
                        writer.add_scalar(f"data/{k}/{source}", count, self.step)
                elif k != "step":
                    writer.add_scalar(f"train/{k}", v, self.step)
        return record


def resolve_resume(cfg: PretrainConfig, where: str) -> Path | None:
    """`--resume` (= "latest") or `--resume PATH` -> the checkpoint folder, checked; None when
    "latest" finds nothing."""
    ckpt_root = Path(cfg.train.out_dir) / "checkpoints"
    path = latest_checkpoint(ckpt_root) if where == "latest" else Path(where)
    if path is not None:
        saved_world_size(path)
    return path


def pretrain(cfg: PretrainConfig, resume: str | None = None) -> dict:
    path = resolve_resume(cfg, resume) if resume else None
    world = int(os.environ.get("WORLD_SIZE", 1))  # set by every launcher (torchrun, deepspeed)
    universal = path is not None and saved_world_size(path) != world
    return run_in_out_dir(cfg.train.out_dir, RUN_FILES, cfg.train.overwrite,
                          build=lambda: Pretrainer(cfg, load_universal=universal),
                          train=Pretrainer.run,
                          resume=(lambda trainer: trainer.resume(path)) if resume else None)
