"""Training loop of the RDPM tokenizer (single device, or DDP under torchrun).

- One config (`TokenizerTrainConfig`) validated before any model is built; `model.modality`
  (image | audio | video) picks the data, reconstruction loss and evaluation (`training_modalities.py`).
- Map-style data (shapes, image folders): a seeded per-epoch permutation split by rank, indexed
  by the step, so a resumed run sees the batches an uninterrupted one would. Webdataset restarts.
- Each step reseeds the RNG from (seed, step, rank): training noise is drawn on the device, and
  a resumed run is bit-identical to an uninterrupted one.
- Checkpoints: atomic step folders (weights, config, discriminator, optimizer state), keep-last-N,
  also on Ctrl-C; the export is `<out_dir>/tokenizer`. Log steps add img/s, TFLOP/s and MFU.
- Ends with held-out metrics (images: PSNR/SSIM; audio: SNR, STFT distance, code rate; video:
  per-frame PSNR/SSIM, tokens per clip; all: codebook usage and the prompt checker on built-in
  data), a metrics JSON and originals next to reconstructions (a PNG for images, WAV files for
  audio, a GIF for video).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from unimodal import distributed as D
from unimodal.checkpointing import (NonFiniteStreak, atomic_folder, latest_checkpoint,
                                    load_torch_file, prune_checkpoints, run_in_out_dir,
                                    step_dir_name, supersede_after)
from unimodal.config import ConfigError, save_config, warmup_cosine
from unimodal.data.image_sources import collate_skip_none
from unimodal.tokenizer.diagnostics import latent_gain_stats, plot_step_diagnostics
from unimodal.tokenizer.flops import training_flops_per_image
from unimodal.tokenizer.losses import PatchDiscriminator, adaptive_gan_weight, hinge_d_loss
from unimodal.tokenizer.rdpm_tokenizer import (RDPMTokenizer, check_same_codes, load_tokenizer,
                                               save_tokenizer)
from unimodal.tokenizer.training_config import (OptimConfig, TokenizerRunConfig,  # noqa: F401
                                               TokenizerTrainConfig)
from unimodal.tokenizer.training_modalities import EXAMPLES_SHOWN, modality_training


# What a run writes into train.out_dir, and which of it describes the run's end.
FINAL_OUTPUTS = ("tokenizer", "metrics.json", "reconstructions.png", "reconstructions_wav",
                 "reconstructions.gif", "step_diagnostics.png")
RUN_FILES = ("log.jsonl", "checkpoints", "train_config.yaml", *FINAL_OUTPUTS)


def _index_batches(n: int, batch: int, seed: int, start_step: int) -> Iterator[list[int]]:
    """Endless per-epoch permutations of range(n), split by rank, starting at `start_step`."""
    rank, world = D.rank(), D.world_size()
    per_rank = n // world
    steps_per_epoch = per_rank // batch
    if steps_per_epoch < 1:
        raise ConfigError(f"{n} training samples cannot fill one batch of {batch} on {world} ranks")
    epoch, offset = divmod(start_step, steps_per_epoch)
    while True:
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        mine = torch.randperm(n, generator=gen)[rank:per_rank * world:world].tolist()
        for i in range(offset, steps_per_epoch):
            yield mine[i * batch:(i + 1) * batch]
        epoch, offset = epoch + 1, 0


def _batches(dataset, cfg: TokenizerTrainConfig, start_step: int) -> Iterator[dict]:
    run = cfg.train
    if isinstance(dataset, torch.utils.data.IterableDataset):
        while True:  # restart the stream when it ends (webdataset sources: resume is not exact)
            loader = DataLoader(dataset, batch_size=run.batch_size, num_workers=cfg.data.num_workers,
                                collate_fn=collate_skip_none)
            for batch in loader:
                if batch is not None:
                    yield batch
    sampler = _index_batches(len(dataset), run.batch_size, run.seed, start_step)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=collate_skip_none, persistent_workers=cfg.data.num_workers > 0)
    for batch in loader:
        if batch is not None:
            yield batch


def _host_values(logs: dict) -> dict:
    """Device scalars -> Python floats in one transfer (a log step's only sync for them)."""
    keys = [k for k, v in logs.items() if torch.is_tensor(v)]
    if not keys:
        return logs
    values = torch.stack([logs[k].float().reshape(()) for k in keys]).tolist()
    return {**logs, **dict(zip(keys, values))}


def lr_factor(step: int, cfg: TokenizerTrainConfig) -> float:
    """The lr multiplier of `step`: warm-up, then constant or a cosine ending at train.steps."""
    optim = cfg.optim
    if optim.schedule == "cosine":
        return warmup_cosine(step, optim.warmup_steps, cfg.train.steps, optim.min_lr_ratio)
    return min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0


class TokenizerTrainer:
    def __init__(self, cfg: TokenizerTrainConfig):
        self.cfg = cfg
        run = cfg.train
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        self.device = D.pick_device(run.device)
        D.init_from_env(self.device)
        torch.manual_seed(run.seed)  # identical initial weights on every rank
        self.out_dir = Path(run.out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.model = RDPMTokenizer(cfg.model).to(self.device)
        if run.init_from:
            start = load_tokenizer(run.init_from)
            check_same_codes(self.model, start, f"train.init_from={run.init_from}", parts=())
            self.model.load_state_dict(start.state_dict())
        # Decoder fine-tuning: the codes stay exactly those of `init_from` (frozen encoder and
        # quantizer, no dead-code revival), so shards already encoded with it stay valid.
        self.decoder_only = run.train_only == "decoder"
        if self.decoder_only:
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.disc = PatchDiscriminator(cfg.model.in_channels, cfg.loss.disc_channels,
                                       cfg.loss.disc_layers, dims=cfg.model.dims).to(self.device)
        self.modality = modality_training(cfg, self.device)  # data, recon loss, metrics
        betas = tuple(cfg.optim.betas)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(trainable, lr=cfg.optim.lr, betas=betas,
                                    weight_decay=cfg.optim.weight_decay)
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.optim.lr, betas=betas,
                                         weight_decay=cfg.optim.weight_decay)
        # What gets gradients: the whole tokenizer, or only its decoder (fed frozen latents).
        self.train_model = self.model.decoder if self.decoder_only else self.model
        self.train_disc = self.disc
        if D.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
            self.train_disc = DistributedDataParallel(self.disc, device_ids=ids)
        self.step = 0
        self.bad_steps = NonFiniteStreak(run.max_nonfinite_steps, self.ckpt_root,
                                         "a non-finite loss or gradients")
        self.bad_counter = self.modality.bad_counter()

    # --- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        path = self.ckpt_root / step_dir_name(self.step)
        if D.is_main():
            with atomic_folder(path) as tmp:
                save_tokenizer(self.model, tmp)
                save_file({k: v.contiguous() for k, v in self.disc.state_dict().items()},
                          str(tmp / "discriminator.safetensors"))
                torch.save({"step": self.step, "opt": self.opt.state_dict(),
                            "disc_opt": self.disc_opt.state_dict()}, tmp / "train_state.pt")
                save_config(self.cfg, tmp / "train_config.yaml")
            prune_checkpoints(self.ckpt_root, self.cfg.train.keep_checkpoints)
        D.barrier()
        return path

    def resume(self, where: str) -> None:
        path = latest_checkpoint(self.ckpt_root) if where == "latest" else Path(where)
        if path is None:
            D.print0(f"--resume: no checkpoint under {self.ckpt_root}; starting from scratch")
            return
        if not (path / "train_state.pt").is_file():
            raise FileNotFoundError(f"--resume {path}: not a tokenizer training checkpoint "
                                    "(no train_state.pt)")
        if self.cfg.data.source == "webdataset" and not self.cfg.train.allow_inexact_resume:
            raise ConfigError(
                "--resume with data.source=webdataset is not exact: the stream restarts at its "
                "first shard, so the resumed run sees other batches than an uninterrupted one. "
                "Set train.allow_inexact_resume=true to resume anyway (weights, optimizer and step "
                "are restored exactly), or use an image folder (exact resume).")
        loaded = load_tokenizer(path, self.device)
        self.model.load_state_dict(loaded.state_dict())
        self.disc.load_state_dict(load_file(str(path / "discriminator.safetensors")))
        state = load_torch_file(path / "train_state.pt", "tokenizer training state")
        self.opt.load_state_dict(state["opt"])
        self.disc_opt.load_state_dict(state["disc_opt"])
        self.step = int(state["step"])
        # Only once everything loaded: a failed resume leaves the folder as it was.
        if D.is_main():
            for moved in supersede_after(self.out_dir, path, FINAL_OUTPUTS):
                D.print0(f"--resume {path.name}: moved aside {moved}")
        D.barrier()
        D.print0(f"resumed from {path} at step {self.step}")

    # --- one step --------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.cfg.train.precision == "bf16" and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, images: torch.Tensor) -> dict:
        """One update. Logged values stay on the device (`fit` reads them on log steps only); the
        one host sync is the finite check that decides whether to apply the step."""
        cfg, lc = self.cfg, self.cfg.loss
        # Every random draw of a step (noise, dead-code picks) is a function of (seed, step,
        # rank), so a resumed run repeats an uninterrupted one exactly.
        torch.manual_seed((cfg.train.seed * 1_000_003 + self.step) * 1009 + D.rank())
        latent_shape = (cfg.model.latent_dim, *cfg.model.grid)
        noise = torch.randn((images.shape[0], cfg.model.code_maps, *latent_shape),
                            device=self.device)
        lr = cfg.optim.lr * lr_factor(self.step, cfg)
        for group in (*self.opt.param_groups, *self.disc_opt.param_groups):
            group["lr"] = lr
        use_gan = self.step >= lc.gan_start and lc.gan_weight > 0
        with self._autocast():
            if self.decoder_only:
                with torch.no_grad():
                    q = self.model.quantize(images, noise=noise)
                recon = self.train_model(q.latent)
            else:
                recon, q = self.train_model(images, noise=noise)
        if not self.decoder_only:
            self.model.quantizer.revive_dead_codes(q)   # every rank: it sums counts, broadcasts
        recon = recon.float()
        rec_loss, nll, extra = self.modality.reconstruction_loss(recon, images)
        logs = {"rec": rec_loss.detach(), "quant": q.loss.detach(), "lr": lr, **extra}
        loss = nll + lc.quant_weight * q.loss
        if use_gan:
            with self._autocast():
                g_loss = -self.train_disc(recon).float().mean()
            weight = (adaptive_gan_weight(nll, g_loss, self.model.decoder.last_layer_weight)
                      if lc.gan_adaptive_weight else torch.tensor(1.0, device=self.device))
            loss = loss + weight * lc.gan_weight * g_loss
            logs.update(g=g_loss.detach(), gan_w=weight.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # The norm is taken after DDP's all-reduce, so every rank makes the same skip decision.
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        logs.update(loss=loss.detach(), grad_norm=grad_norm.detach())
        if not bool(torch.isfinite(logs["loss"]) & torch.isfinite(logs["grad_norm"])):
            # Skip the update; the step (and its batch) is spent, so resume stays exact.
            self.opt.zero_grad(set_to_none=True)
            return {**logs, "skipped": True}
        self.opt.step()
        if use_gan:
            with self._autocast():
                d_loss = hinge_d_loss(self.train_disc(images).float(),
                                      self.train_disc(recon.detach()).float())
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            logs["d"] = d_loss.detach()
        logs.update({self.modality.quality_key: self.modality.batch_quality(images, recon.detach()),
                     "usage": q.usage, "ppl": q.perplexity})
        return logs

    # --- the run ---------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        cfg, run = self.cfg, self.cfg.train
        dataset = self.modality.dataset("train", counter=self.bad_counter)
        if D.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "train_config.yaml")
        log_file = open(self.out_dir / "log.jsonl", "a") if D.is_main() else None
        bar = tqdm(total=run.steps, initial=self.step, disable=not D.is_main(), desc="rdpm",
                   dynamic_ncols=True)
        batches = _batches(dataset, cfg, self.step)
        window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
        flops_per_image = training_flops_per_image(self.model, self.decoder_only)  # counted once
        deadline = time.perf_counter() + 60 * run.max_minutes if run.max_minutes > 0 else None
        try:
            while self.step < run.steps:
                # Checked on log steps only, and agreed by all ranks (DDP needs the same steps).
                if (deadline is not None and self.step % run.log_every == 0
                        and D.any_rank(time.perf_counter() > deadline, self.device)):
                    D.print0(f"\ntrain.max_minutes={run.max_minutes} reached at step {self.step}")
                    break
                wait_start = time.perf_counter()
                batch = next(batches)
                data_wait += time.perf_counter() - wait_start  # host blocked on the loader
                images = batch[self.modality.input_key].to(self.device, non_blocking=True)
                logs = self.train_step(images)
                self.step += 1
                if logs.get("skipped"):
                    self.bad_steps.skipped(self.step, D.print0)
                else:
                    self.bad_steps.good()
                window_images += images.shape[0] * D.world_size()
                bar.update(1)
                if self.step % run.log_every == 0 or self.step == run.steps:
                    logs = _host_values(logs)
                    elapsed = time.perf_counter() - window_start
                    rate = logs[self.modality.rate_key] = window_images / max(elapsed, 1e-9)
                    logs["tflops"] = flops_per_image * rate / 1e12   # all ranks
                    logs["mfu"] = logs["tflops"] / (run.peak_tflops * D.world_size())
                    logs["skipped_steps"] = self.bad_steps.total
                    # Near 1: the loader starves the step (more workers); near 0: compute-bound.
                    logs["data_wait_frac"] = data_wait / max(elapsed, 1e-9)
                    window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
                    if run.diagnostics_every and self.step % run.diagnostics_every == 0:
                        logs["diagnostics"] = self.diagnostics(images[:run.diagnostics_images])
                    bar.set_postfix({k: f"{logs[k]:.3g}" for k in (
                        "loss", "rec", "quant", self.modality.quality_key, "usage",
                        self.modality.rate_key, "mfu", "data_wait_frac") if k in logs})
                    if log_file:
                        log_file.write(json.dumps({"step": self.step, **logs}) + "\n")
                        log_file.flush()
                if self.step % run.checkpoint_every == 0 and self.step < run.steps:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            D.print0(f"\ninterrupted at step {self.step}: writing a checkpoint")
            self.save_checkpoint()
            raise
        finally:
            bar.close()
            if log_file:
                log_file.close()
        self.save_checkpoint()
        if D.is_main():
            with atomic_folder(self.out_dir / "tokenizer") as tmp:
                save_tokenizer(self.model, tmp)
        if self.bad_counter.total_bad:
            D.print0(self.bad_counter.summary())
        return self.evaluate()

    @torch.no_grad()
    def diagnostics(self, images: torch.Tensor) -> dict:
        """Per-step quantizer statistics and prefix PSNR/SNR on some of this batch (fresh noise)."""
        cfg = self.cfg.model
        noise = torch.randn((images.shape[0], cfg.code_maps, cfg.latent_dim, *cfg.grid),
                            device=self.device)
        meter = self.modality.step_diagnostics()
        with self._autocast():
            meter.update(self.model, images, noise)
        return {**meter.compute(), **latent_gain_stats(self.model)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out metrics (see `training_modalities`), the metrics JSON and the originals
        next to their reconstructions (rank 0)."""
        if not D.is_main():
            return {}
        cfg = self.cfg
        self.model.eval()
        heldout = self.modality.dataset("heldout")
        loader = DataLoader(heldout, batch_size=cfg.train.batch_size, collate_fn=collate_skip_none)
        meter, code_counts, shown = self.modality.eval_meter(), None, None
        steps_meter = self.modality.step_diagnostics()
        seen = 0
        for batch in loader:
            if batch is None:
                continue
            images = batch[self.modality.input_key].to(self.device)[: cfg.train.eval_images - seen]
            seeds = list(range(seen, seen + images.shape[0]))
            with self._autocast():
                codes = self.model.encode(images, seeds)
                recon = self.model.decode(codes).float().clamp(-1, 1)
                noise = self.model.quantizer.noise(seeds, (cfg.model.latent_dim, *cfg.model.grid),
                                                   device=self.device)
                steps_meter.update(self.model, images, noise)
            meter.update(images, recon, batch["key"][:images.shape[0]])
            counts = torch.bincount(codes.flatten(), minlength=cfg.model.codebook_size)
            code_counts = counts if code_counts is None else code_counts + counts
            if shown is None:
                shown = (images[:EXAMPLES_SHOWN].cpu(), recon[:EXAMPLES_SHOWN].cpu())
            seen += images.shape[0]
            if seen >= cfg.train.eval_images:
                break
        self.model.train()
        metrics = {"step": self.step, **meter.compute(), **self.modality.metrics()}
        if code_counts is not None:
            metrics["codebook_usage"] = (code_counts > 0).float().mean().item()
        if steps_meter.batches:
            metrics["per_step"] = steps_meter.compute()
            plot_step_diagnostics(metrics["per_step"], self.out_dir / "step_diagnostics.png",
                                  f"{self.out_dir}: held-out, step {self.step}")
        metrics.update(latent_gain_stats(self.model))
        (self.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        examples = self.out_dir / self.modality.examples_output
        if shown is not None:
            examples = self.modality.write_examples(shown[0], shown[1], self.out_dir)
        agreement = metrics.get("per_step", {}).get("seed_agreement")
        fixed = (f", codes fixed by the input alone {sum(agreement) / len(agreement):.0%} (the rest "
                 "follow the noise)") if agreement else ""
        print(f"held-out: {self.modality.summary(metrics)}{fixed} -> {examples}", flush=True)
        return metrics


def train_tokenizer(cfg: TokenizerTrainConfig, resume: str | None = None) -> dict[str, float]:
    return run_in_out_dir(cfg.train.out_dir, RUN_FILES, cfg.train.overwrite,
                          build=lambda: TokenizerTrainer(cfg), train=TokenizerTrainer.fit,
                          resume=(lambda trainer: trainer.resume(resume)) if resume else None)
