"""How well an audio tokenizer reconstructs waveforms: SNR, multi-resolution STFT distance, and
the audio checker's prompt accuracy on the reconstructions.

Design choices, one line each:
- SNR per clip in dB: 10 log10(sum x^2 / sum (x - x')^2) over the whole clip, padding included
  (zeros there reconstructed as zeros add nothing to either sum); an exact reconstruction is
  capped at MAX_SNR_DB instead of +inf so means stay finite.
- STFT distance per clip: the training loss's multi-resolution STFT (spectral convergence +
  log-magnitude L1, `unimodal.tokenizer.losses`), so the metric and the loss agree by definition.
- Checker: `audio_checker.score_reconstructions` on clips whose dataset key names a built-in
  audio-notes clip; only when the clip holds the longest note clip (2 s), since a cropped clip
  has lost notes its caption counts. Otherwise "checker" is absent from the result.
"""

from __future__ import annotations

import torch

from unimodal.data.audio_notes import MAX_DURATION
from unimodal.metrics.audio_checker import AudioAccuracy, score_reconstructions
from unimodal.tokenizer.losses import multi_resolution_stft_loss

MAX_SNR_DB = 100.0


@torch.no_grad()
def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per clip SNR (dB) of `estimate` against `reference`, both (B, 1, samples) or (B, samples)."""
    ref = reference.double().reshape(reference.shape[0], -1)
    err = ref - estimate.double().reshape(estimate.shape[0], -1)
    signal, noise = ref.pow(2).sum(1), err.pow(2).sum(1)
    ratio = 10 * torch.log10(signal.clamp_min(1e-20) / noise.clamp_min(1e-20))
    return ratio.clamp(max=MAX_SNR_DB).float()


@torch.no_grad()
def stft_distance(reference: torch.Tensor, estimate: torch.Tensor, fft_sizes,
                  log_floor: float = 1.0) -> torch.Tensor:
    """Per clip multi-resolution STFT distance (spectral convergence + log-magnitude L1)."""
    out = []
    for ref, est in zip(reference, estimate):
        convergence, log_magnitude = multi_resolution_stft_loss(est[None], ref[None], fft_sizes,
                                                                log_floor)
        out.append(convergence + log_magnitude)
    return torch.stack(out).float()


class AudioReconstructionMeter:
    """Running means of SNR and STFT distance, and the checker's accuracy, over batches."""

    def __init__(self, sample_rate: int, clip_samples: int, fft_sizes=(512, 1024, 2048),
                 log_floor: float = 1.0):
        self.sample_rate, self.fft_sizes, self.log_floor = sample_rate, tuple(fft_sizes), log_floor
        self.check_prompts = clip_samples >= MAX_DURATION * sample_rate
        self.snr: list[torch.Tensor] = []
        self.stft: list[torch.Tensor] = []
        self.checker = AudioAccuracy()

    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor,
               keys=None) -> None:
        originals, reconstructions = originals.float().cpu(), reconstructions.float().cpu()
        self.snr.append(snr_db(originals, reconstructions))
        self.stft.append(stft_distance(originals, reconstructions, self.fft_sizes,
                                       self.log_floor))
        if self.check_prompts and keys is not None:
            score_reconstructions(self.checker, reconstructions, list(keys)[:len(reconstructions)],
                                  self.sample_rate)

    def compute(self) -> dict:
        if not self.snr:
            return {"clips": 0}
        snr, stft = torch.cat(self.snr), torch.cat(self.stft)
        out: dict = {"snr_db": snr.mean().item(), "stft_distance": stft.mean().item(),
                     "clips": int(snr.numel())}
        if self.checker.counts:
            out["checker"] = self.checker.compute()
        return out
