"""How well a video tokenizer reconstructs clips: PSNR and SSIM per frame, and the video checker's
prompt accuracy on the reconstructions.

Design choices, one line each:
- Clips are the tokenizer's layout, (B, 3, F, H, W) in [-1, 1], channels before frames.
- PSNR and SSIM are the image metrics (`metrics.reconstruction`) on every frame alone, so a video
  figure reads like an image one; the meter keeps the mean over all frames and the mean per frame
  index (whether the frames of a temporal code pair, or the first and last frames, fare worse).
- Checker: `video_checker.score_reconstructions` on clips whose dataset key names a built-in
  moving-shapes clip (motion is judged over the reconstructed frames); absent otherwise.
"""

from __future__ import annotations

import torch

from unimodal.metrics.reconstruction import psnr_per_image, ssim_per_image
from unimodal.metrics.video_checker import VideoAccuracy, score_reconstructions


def clips_as_frames(clips: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) -> (B, F, 3, H, W): the frame-major layout of the data and the checker."""
    if clips.dim() != 5:
        raise ValueError(f"expected clips (B, 3, F, H, W), got {tuple(clips.shape)}")
    return clips.transpose(1, 2)


def _per_frame(measure, original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    a, b = clips_as_frames(original), clips_as_frames(reconstruction)
    batch, frames = a.shape[:2]
    return measure(a.reshape(batch * frames, *a.shape[2:]).float(),
                   b.reshape(batch * frames, *b.shape[2:]).float()).reshape(batch, frames)


@torch.no_grad()
def psnr_per_frame(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(B, F) PSNR in dB of each frame on [0, 1] pixels (data range 1)."""
    return _per_frame(psnr_per_image, original, reconstruction)


@torch.no_grad()
def ssim_per_frame(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(B, F) SSIM of each frame."""
    return _per_frame(ssim_per_image, original, reconstruction)


def psnr_per_clip(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(B,) the mean per-frame PSNR of each clip (the training's per-step and log-step figure)."""
    return psnr_per_frame(original, reconstruction).mean(1)


class VideoReconstructionMeter:
    """Running per-frame PSNR/SSIM over batches of clips, and the checker on the reconstructions."""

    def __init__(self):
        self.psnr: list[torch.Tensor] = []   # (B, F) per batch
        self.ssim: list[torch.Tensor] = []
        self.checker = VideoAccuracy()

    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor, keys=None) -> None:
        originals, reconstructions = originals.float().cpu(), reconstructions.float().cpu()
        self.psnr.append(psnr_per_frame(originals, reconstructions))
        self.ssim.append(ssim_per_frame(originals, reconstructions))
        if keys is not None:
            score_reconstructions(self.checker, clips_as_frames(reconstructions),
                                  list(keys)[:len(reconstructions)])

    def compute(self) -> dict:
        if not self.psnr:
            return {"clips": 0}
        psnr, ssim = torch.cat(self.psnr), torch.cat(self.ssim)
        out: dict = {"psnr": psnr.mean().item(), "ssim": ssim.mean().item(),
                     "psnr_per_frame": psnr.mean(0).tolist(), "ssim_per_frame": ssim.mean(0).tolist(),
                     "clips": int(psnr.shape[0])}
        if self.checker.counts:
            out["checker"] = self.checker.compute()
        return out
