"""Tokenizer reconstruction evaluation (eval/recon.py): PSNR, SSIM, codebook usage and rFID.

Images come from any image source (shapes, folder, webdataset; held-out split by default), are
encoded with per-sample seeds and decoded from the codes alone, exactly as generated images would
be. rFID runs when an Inception weights file is given; originals and reconstructions are written
as PNGs for it (and for looking at). On the built-in shapes data the prompt checker also scores the
reconstructions against their originals' captions: the ceiling of any generator using this
tokenizer. Per-step diagnostics (`unimodal.tokenizer.diagnostics`) go to the JSON and a PNG.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from unimodal.config import ConfigError
from unimodal.data.image_sources import ImageDataConfig, build_image_dataset, collate_skip_none
from unimodal.distributed import pick_device
from unimodal.images import save_comparison_grid, save_png
from unimodal.metrics.reconstruction import (ReconstructionMeter, folder_fid,
                                             inception_weights_or_error)
from unimodal.metrics.shapes_checker import ShapesAccuracy, score_reconstructions
from unimodal.tokenizer.diagnostics import (StepDiagnostics, latent_gain_stats,
                                            plot_step_diagnostics)
from unimodal.tokenizer.encode_shards import noise_seed
from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer, require_image_tokenizer


@dataclass
class ReconEvalConfig:
    tokenizer: str = ""                   # folder written by train_rdpm.py
    out_dir: str = "runs/recon_eval"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    split: str = "heldout"
    max_images: int = 1000
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    inception_weights: str = ""           # torch-fidelity Inception file; "" = no rFID
    save_images: bool = True

    def validate(self) -> None:
        if not self.tokenizer or not Path(self.tokenizer).is_dir():
            raise ConfigError(f"tokenizer={self.tokenizer!r}: give the tokenizer folder")
        if self.inception_weights:
            inception_weights_or_error(self.inception_weights, "inception_weights")
        try:
            self.data.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from err


@torch.no_grad()
def evaluate_reconstruction(cfg: ReconEvalConfig) -> dict:
    cfg.validate()
    device = pick_device(cfg.device)
    tok = load_tokenizer(cfg.tokenizer, device)
    require_image_tokenizer(tok, cfg.tokenizer, "eval/recon.py measures images (audio and video "
                            "tokenizers' metrics come from their training run, metrics.json)")
    out = Path(cfg.out_dir)
    real_dir, fake_dir = out / "original", out / "reconstruction"
    write_pngs = cfg.save_images or bool(cfg.inception_weights)  # rFID reads the two folders
    out.mkdir(parents=True, exist_ok=True)
    for d in (real_dir, fake_dir) if write_pngs else ():
        d.mkdir(exist_ok=True)
    loader = DataLoader(build_image_dataset(cfg.data, cfg.split), batch_size=cfg.batch_size,
                        collate_fn=collate_skip_none, num_workers=cfg.data.num_workers)
    meter, counts, first = ReconstructionMeter(), torch.zeros(tok.cfg.codebook_size), None
    steps_meter, checker = StepDiagnostics(), ShapesAccuracy()
    latent_shape = (tok.cfg.latent_dim, *tok.cfg.grid)
    bar = tqdm(total=cfg.max_images, desc="recon", unit="img", dynamic_ncols=True)
    start = time.perf_counter()
    for batch in loader:
        if batch is None:
            continue
        keep = cfg.max_images - meter.count
        images, keys = batch["image"][:keep].to(device), batch["key"][:keep]
        seeds = [noise_seed(cfg.seed, k) for k in keys]
        codes = tok.encode(images, seeds)
        recon = tok.decode(codes).float().clamp(-1, 1)
        meter.update(images, recon)
        steps_meter.update(tok, images, tok.quantizer.noise(seeds, latent_shape, device=device))
        score_reconstructions(checker, recon.cpu(), keys)
        counts += torch.bincount(codes.flatten().cpu(), minlength=tok.cfg.codebook_size)
        if first is None:
            first = (images[:8].cpu(), recon[:8].cpu())
        if write_pngs:
            for img, rec, key in zip(images, recon, keys):
                name = key.replace("/", "_") + ".png"
                save_png(img, real_dir / name)
                save_png(rec, fake_dir / name)
        bar.update(images.shape[0])
        if meter.count >= cfg.max_images:
            break
    bar.close()
    metrics = {**meter.compute(), "codebook_usage": (counts > 0).float().mean().item(),
               "seconds": time.perf_counter() - start}
    if checker.counts:  # shapes data: accuracy of the checker on the reconstructions
        metrics.update({f"checker_{k}": v for k, v in checker.compute().items() if k != "images"})
    per_step = steps_meter.compute() if steps_meter.batches else None
    if per_step:
        plot_step_diagnostics(per_step, out / "step_diagnostics.png", f"{cfg.tokenizer}: per step")
        metrics["final_latent_error"] = per_step["final_error"][0]
    metrics.update(latent_gain_stats(tok))
    if cfg.inception_weights:
        metrics.update(rfid=folder_fid(real_dir, fake_dir, cfg.inception_weights,
                                       cuda=device.type == "cuda")["fid"])
    if first is not None:
        save_comparison_grid(*first, out / "reconstructions.png")
    report = {"metrics": metrics, "per_step": per_step, "config": asdict(cfg)}
    (out / "recon_metrics.json").write_text(json.dumps(report, indent=2))
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in metrics.items())
    if per_step:
        header = "| step t | " + " | ".join(str(t + 1) for t in range(len(per_step["quant_error"])))
        lines = [f"| {key} | " + " | ".join(f"{x:.3f}" for x in per_step[key]) + " |"
                 for key in per_step if key != "final_error"]
        rows += ("\n\n" + header + " |\n|" + "---|" * (len(per_step["quant_error"]) + 1) + "\n"
                 + "\n".join(lines))
    (out / "recon_metrics.md").write_text(f"| metric | value |\n|---|---|\n{rows}\n")
    return metrics
