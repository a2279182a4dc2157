"""Where the RDPM tokenizer loses content: per-step statistics of Algorithm 1 and a plot of them.

- `StepDiagnostics` accumulates, over batches, for each step t: the residual still to explain,
  the quantizer input and its image part, the quantization error, code usage and perplexity, the
  share of codes that stay the same under another noise draw (`seed_agreement`), and
  the quality of decoding from the first t code maps only (PSNR for images; the caller may pass
  another per-sample measure, the audio trainer passes SNR under "prefix_snr"). Values stay on the device until
  `compute()`, so a training loop pays one host sync per diagnostic step.
- `latent_gain_stats`: the latent LayerNorm's gain (the latent's scale against unit noise).
- `plot_step_diagnostics`: one PNG with the per-step curves (matplotlib, imported lazily).

Why these: the decoder sees z'_T = z - z_{T+1}; its input error is the last step's quantization
error of a residual that still carries the injected noise. If the late steps' residual variance
stays near the noise variance, their codes spend the codebook on noise rather than content.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unimodal.metrics.reconstruction import psnr_per_image

class StepDiagnostics:
    """Running per-step means over batches of (inputs, noise) through a tokenizer."""

    def __init__(self, quality=psnr_per_image, quality_key: str = "prefix_psnr"):
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.quality, self.quality_key = quality, quality_key  # per-sample (B,) measure, its name

    @torch.no_grad()
    def update(self, tokenizer, images: torch.Tensor, noise: torch.Tensor,
               prefix_psnr: bool = True) -> None:
        """images (B, 3, H, W) or waveforms (B, 1, samples) in [-1, 1]; noise (B, T, d, *grid),
        as the tokenizer's forward takes."""
        q = tokenizer.quantizer
        z = tokenizer.encoder(images)
        stats, codes = q.step_statistics(z, noise)
        # The same input under another noise draw (each step's eps taken from the step before, an
        # independent draw; no RNG consumed): the share of step t's codes fixed by the input alone,
        # all a model that does not see eps_t (a plain next-token document) could predict.
        _, other = q.step_statistics(z, noise.roll(1, dims=1))
        stats["seed_agreement"] = (codes == other).flatten(2).float().mean((0, 2))
        if prefix_psnr:
            latent = torch.zeros_like(z)
            psnr = []
            for t in range(q.steps):  # decode from C_1..C_t only
                latent = latent + q.embed_step(codes[:, t]).to(latent.dtype)
                recon = tokenizer.decoder(latent).float().clamp(-1, 1)
                psnr.append(self.quality(images, recon).mean())
            stats[self.quality_key] = torch.stack(psnr)
        for key, value in stats.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.batches += 1

    def compute(self) -> dict[str, list[float]]:
        """Per-step means as lists of length T (final_error: one value)."""
        n = max(self.batches, 1)
        return {key: (value / n).cpu().tolist() for key, value in self.sums.items()}


def latent_gain_stats(tokenizer) -> dict[str, float]:
    gain = tokenizer.encoder.latent_norm.gain().float()
    return {"gain_mean": gain.mean().item(), "gain_std": gain.std().item() if gain.numel() > 1 else 0.0,
            "gain_min": gain.min().item(), "gain_max": gain.max().item()}


def plot_step_diagnostics(diagnostics: dict[str, list[float]], path: str | Path,
                          title: str = "RDPM tokenizer, per step") -> Path:
    """Four panels: variances, quantization error, codebook usage/perplexity, prefix PSNR."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(1, len(diagnostics["quant_error"]) + 1))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    ax = axes[0]
    for key, label in (("residual_var", "residual |z_t|^2"), ("content_var", "image part |a_t z_t|^2"),
                       ("input_var", "quantizer input |v_t|^2")):
        ax.plot(steps, diagnostics[key], marker="o", label=label)
    ax.set_title("mean square per channel")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(steps, diagnostics["quant_error"], marker="o", color="C3")
    ax.set_title("quantization error |v_t - v'_t|^2")
    ax = axes[2]
    ax.plot(steps, diagnostics["usage"], marker="o", label="usage")
    ax.set_ylim(0, 1.05)
    ax.set_title("codebook usage (left) / perplexity (right)")
    ax2 = ax.twinx()
    ax2.plot(steps, diagnostics["perplexity"], marker="s", color="C1", label="perplexity")
    if "seed_agreement" in diagnostics:  # older metrics.json files lack it
        ax.plot(steps, diagnostics["seed_agreement"], marker="^", color="C4",
                label="codes equal under another noise draw")
        ax.legend(fontsize=7, loc="lower left")
    ax = axes[3]
    for key, name in (("prefix_psnr", "PSNR"), ("prefix_snr", "SNR")):
        if key in diagnostics:
            ax.plot(steps, diagnostics[key], marker="o", color="C2")
            ax.set_title(f"{name} decoding C_1..C_t (dB)")
    for ax in axes:
        ax.set_xlabel("step t")
        ax.set_xticks(steps)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
