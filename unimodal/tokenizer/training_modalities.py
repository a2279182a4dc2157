"""What the tokenizer training loop does differently per `model.modality`: the data source, the
reconstruction loss, the per-step quality figure and the held-out evaluation.

- image: shapes / image folder / webdataset; L2 (or L1) + LPIPS (when weights are given); PSNR on
  log steps; held-out PSNR/SSIM, the shapes checker, `reconstructions.png`.
- audio: audio notes / a folder of WAV/FLAC; L1 or L2 on the waveform + `loss.stft_weight` x the
  multi-resolution STFT loss (spectral convergence + log magnitude); SNR on log steps; held-out
  SNR, STFT distance, the audio checker on the reconstructions, the code rate (tokens/s,
  bits/s) and originals next to reconstructions as WAV files under `reconstructions_wav/`.
- video: the moving shapes, clips (B, 3, F, H, W); L1 or L2 over all frames (the mean of the
  per-frame losses; LPIPS and the GAN are refused in the config); mean per-frame PSNR on log steps;
  held-out per-frame PSNR/SSIM, the video checker on the reconstructions, tokens per clip, and
  `reconstructions.gif` (each row an original beside its reconstruction).
The loop itself (`training.py`) is the same for all: quantizer, GAN, checkpoints, resume.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unimodal.data.audio_sources import build_audio_dataset, write_wav
from unimodal.data.image_sources import BadSampleCounter, build_image_dataset
from unimodal.data.moving_shapes import ChannelsFirstClips, MovingShapesDataset
from unimodal.data.video_files import save_gif
from unimodal.images import save_comparison_grid
from unimodal.metrics.audio_reconstruction import AudioReconstructionMeter, snr_db
from unimodal.metrics.reconstruction import ReconstructionMeter, psnr_per_image
from unimodal.metrics.shapes_checker import ShapesAccuracy, score_reconstructions
from unimodal.metrics.video_reconstruction import (VideoReconstructionMeter, clips_as_frames,
                                                   psnr_per_clip)
from unimodal.tokenizer.diagnostics import StepDiagnostics
from unimodal.tokenizer.losses import (build_perceptual, multi_resolution_stft_loss,
                                       reconstruction_loss)
from unimodal.tokenizer.training_config import TokenizerTrainConfig

EXAMPLES_SHOWN = 8  # held-out samples written as the comparison PNG / WAV pairs / GIF rows


def _checker_summary(metrics: dict) -> str:
    """The prompt checker's whole-prompt accuracy for the one-line summary, when it ran."""
    return f" checker_prompt={metrics['checker']['prompt']:.3f}" if "checker" in metrics else ""


class ImageEvalMeter:
    """Held-out PSNR/SSIM and, on shapes data, the shapes checker on the reconstructions."""

    def __init__(self):
        self.meter, self.checker = ReconstructionMeter(), ShapesAccuracy()

    def update(self, originals: torch.Tensor, recon: torch.Tensor, keys) -> None:
        self.meter.update(originals, recon)
        score_reconstructions(self.checker, recon.cpu(), list(keys)[:recon.shape[0]])

    def compute(self) -> dict:
        out = self.meter.compute()
        if self.checker.counts:
            out["checker"] = self.checker.compute()
        return out


class ImageTraining:
    input_key, rate_key, quality_key = "image", "img_per_s", "psnr"
    examples_output = "reconstructions.png"

    def __init__(self, cfg: TokenizerTrainConfig, device: torch.device):
        self.cfg = cfg
        self.perceptual = build_perceptual(cfg.loss)
        if self.perceptual is not None:
            self.perceptual.to(device)

    def bad_counter(self) -> BadSampleCounter:
        return BadSampleCounter(self.cfg.data.max_bad_fraction)

    def dataset(self, split: str, counter: BadSampleCounter | None = None):
        return build_image_dataset(self.cfg.data, split, counter=counter)

    def reconstruction_loss(self, recon: torch.Tensor, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(the pixel loss alone, the whole reconstruction loss the GAN weight is balanced
        against, values to log)."""
        rec = reconstruction_loss(recon, x, self.cfg.loss.recon)
        nll, logs = rec, {}
        if self.perceptual is not None:
            p_loss = self.perceptual(recon, x)
            nll = nll + self.cfg.loss.perceptual_weight * p_loss
            logs["lpips"] = p_loss.detach()
        return rec, nll, logs

    def batch_quality(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        return psnr_per_image(x, recon).mean()

    def step_diagnostics(self) -> StepDiagnostics:
        return StepDiagnostics()

    def eval_meter(self) -> ImageEvalMeter:
        return ImageEvalMeter()

    def write_examples(self, originals: torch.Tensor, recon: torch.Tensor, out_dir: Path) -> Path:
        path = out_dir / self.examples_output
        save_comparison_grid(originals, recon, path)
        return path

    def metrics(self) -> dict:
        return {}

    def summary(self, metrics: dict) -> str:
        ceiling = (f" checker_prompt={metrics['checker']['prompt']:.3f}"
                   if "checker" in metrics else "")
        return (f"psnr={metrics['psnr']:.2f} dB ssim={metrics['ssim']:.4f} "
                f"codebook_usage={metrics.get('codebook_usage', 0):.3f}{ceiling} "
                f"images={metrics['images']}")


class AudioTraining:
    input_key, rate_key, quality_key = "waveform", "clips_per_s", "snr"
    examples_output = "reconstructions_wav"

    def __init__(self, cfg: TokenizerTrainConfig, device: torch.device):
        self.cfg = cfg
        self.perceptual = None  # LPIPS is an image network

    def bad_counter(self) -> BadSampleCounter:
        return BadSampleCounter(self.cfg.data.max_bad_fraction, kind="audio")

    def dataset(self, split: str, counter: BadSampleCounter | None = None):
        data, model = self.cfg.data, self.cfg.model
        return build_audio_dataset(data.source, data.path, model.sample_rate, model.clip_samples,
                                   split, data.num_samples, data.heldout_samples, data.seed,
                                   counter if counter is not None else self.bad_counter())

    def reconstruction_loss(self, recon: torch.Tensor, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        lc = self.cfg.loss
        rec = reconstruction_loss(recon, x, lc.recon)
        if lc.stft_weight <= 0:
            return rec, rec, {}
        convergence, log_magnitude = multi_resolution_stft_loss(recon, x, lc.stft_fft_sizes,
                                                                lc.stft_log_floor)
        nll = rec + lc.stft_weight * (convergence + log_magnitude)
        return rec, nll, {"stft_sc": convergence.detach(), "stft_mag": log_magnitude.detach()}

    def batch_quality(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        return snr_db(x, recon).mean()

    def step_diagnostics(self) -> StepDiagnostics:
        return StepDiagnostics(quality=snr_db, quality_key="prefix_snr")

    def eval_meter(self) -> AudioReconstructionMeter:
        return AudioReconstructionMeter(self.cfg.model.sample_rate, self.cfg.model.clip_samples,
                                        self.cfg.loss.stft_fft_sizes, self.cfg.loss.stft_log_floor)

    def write_examples(self, originals: torch.Tensor, recon: torch.Tensor, out_dir: Path) -> Path:
        folder = out_dir / self.examples_output
        folder.mkdir(parents=True, exist_ok=True)
        for i, (a, b) in enumerate(zip(originals, recon)):
            write_wav(folder / f"{i:02d}_original.wav", a, self.cfg.model.sample_rate)
            write_wav(folder / f"{i:02d}_reconstruction.wav", b, self.cfg.model.sample_rate)
        return folder

    def summary(self, metrics: dict) -> str:
        rate = metrics["code_rate"]
        checker = _checker_summary(metrics)
        return (f"snr={metrics['snr_db']:.2f} dB stft_distance={metrics['stft_distance']:.3f} "
                f"codebook_usage={metrics.get('codebook_usage', 0):.3f}{checker} "
                f"clips={metrics['clips']} at {rate['tokens_per_second']:.0f} tokens/s, "
                f"{rate['bits_per_second'] / 1000:.2f} kbit/s")

    def metrics(self) -> dict:
        return {"code_rate": self.cfg.model.code_rate()}


class VideoTraining:
    input_key, rate_key, quality_key = "video", "clips_per_s", "psnr"
    examples_output = "reconstructions.gif"

    def __init__(self, cfg: TokenizerTrainConfig, device: torch.device):
        self.cfg = cfg
        self.perceptual = None  # LPIPS is an image network (refused in the config)

    def bad_counter(self) -> BadSampleCounter:
        return BadSampleCounter(self.cfg.data.max_bad_fraction)  # rendered clips: never bad

    def dataset(self, split: str, counter: BadSampleCounter | None = None):
        data, model = self.cfg.data, self.cfg.model
        count, offset = ((data.num_samples, 0) if split == "train"
                         else (data.heldout_samples, data.num_samples))  # disjoint splits
        return ChannelsFirstClips(MovingShapesDataset(count, model.num_frames, model.image_size,
                                                      data.seed, offset=offset))

    def reconstruction_loss(self, recon: torch.Tensor, x: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        rec = reconstruction_loss(recon, x, self.cfg.loss.recon)  # every frame weighs the same
        return rec, rec, {}

    def batch_quality(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        return psnr_per_clip(x, recon).mean()

    def step_diagnostics(self) -> StepDiagnostics:
        return StepDiagnostics(quality=psnr_per_clip, quality_key="prefix_psnr")

    def eval_meter(self) -> VideoReconstructionMeter:
        return VideoReconstructionMeter()

    def write_examples(self, originals: torch.Tensor, recon: torch.Tensor, out_dir: Path) -> Path:
        """One GIF: a row per clip, the original left of its reconstruction."""
        rows = torch.cat([clips_as_frames(originals), clips_as_frames(recon)], dim=-1)  # side by side
        return save_gif(torch.cat(list(rows), dim=-2), out_dir / self.examples_output)

    def metrics(self) -> dict:
        return {"code_rate": self.cfg.model.code_rate()}

    def summary(self, metrics: dict) -> str:
        rate = metrics["code_rate"]
        checker = _checker_summary(metrics)
        return (f"psnr={metrics['psnr']:.2f} dB ssim={metrics['ssim']:.4f} (per frame) "
                f"codebook_usage={metrics.get('codebook_usage', 0):.3f}{checker} "
                f"clips={metrics['clips']} at {rate['tokens_per_clip']} tokens per clip")


MODALITY_TRAINING = {"image": ImageTraining, "audio": AudioTraining, "video": VideoTraining}


def modality_training(cfg: TokenizerTrainConfig, device: torch.device
                      ) -> ImageTraining | AudioTraining | VideoTraining:
    return MODALITY_TRAINING[cfg.model.modality](cfg, device)
