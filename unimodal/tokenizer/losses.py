"""Training losses of the RDPM tokenizer (VQGAN recipe, rdpm.md section 1).

    L = ||x - x'||^2 + quant_weight * L_quant + perceptual_weight * LPIPS(x, x')
        + adaptive_weight * gan_weight * L_gan            (after `gan_start` steps)
    audio: L = |x - x'|_{1 or 2} + stft_weight * MR-STFT(x, x') + quant_weight * L_quant
        (+ the optional GAN on a 1-D patch discriminator; no LPIPS)

Design choices, one line each:
- Perceptual: LPIPS-VGG from the `lpips` package; the VGG16 trunk comes from a local torchvision
  state-dict file (nothing is downloaded), the LPIPS linear heads ship inside the package.
  No file given -> the term is off and a warning says so.
- Discriminator: PatchGAN (VQGAN's NLayerDiscriminator shape), hinge loss.
- Adaptive GAN weight: ||grad L_rec|| / ||grad L_gan|| at the decoder's last layer (VQGAN).
- `loss.recon`: l2 (the paper; images) or l1 on the pixels/waveform.
- Multi-resolution STFT (Parallel WaveGAN): per FFT size, spectral convergence
  || |Y| - |X| ||_F / || |Y| ||_F plus mean |log(|Y| + f) - log(|X| + f)|, Hann window, hop n/4,
  averaged over sizes, in float32 even under autocast; magnitudes from power clamped at 1e-7
  (finite gradients at silence). FFT sizes above half the clip are halved until they fit.
- The log floor f (`loss.stft_log_floor`, in |STFT| units: a 0.5 sine peaks near 64 at n = 512)
  is 1, not ~0: the built-in notes hold exact digital silence, where log |Y| sits at the clamp
  and any output costs ~10 per bin; with f ~ 0 that term drove the audio autoencoder to output
  silence (measured on CPU: spectral convergence stuck at 1.0), with f = 1 it learns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from unimodal.config import ConfigError
from unimodal.tokenizer.autoencoder import conv_of

RECON_LOSSES = ("l1", "l2")


@dataclass
class TokenizerLossConfig:
    recon: str = "l2"                     # l1 | l2 distance of x' to x (pixels or waveform)
    stft_weight: float = 0.0              # audio: weight of the multi-resolution STFT loss
    stft_fft_sizes: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    stft_log_floor: float = 1.0           # f in log(|STFT| + f); see the module docstring
    quant_weight: float = 0.25            # delta
    perceptual_weight: float = 1.0
    perceptual_weights_path: str = ""     # torchvision vgg16 state dict (.pth); "" = perceptual off
    gan_weight: float = 0.75              # eta
    gan_start: int = 2000                 # step at which the discriminator and L_gan switch on
    gan_adaptive_weight: bool = True
    disc_channels: int = 64
    disc_layers: int = 3

    def validate(self, prefix: str = "loss") -> None:
        if self.recon not in RECON_LOSSES:
            raise ConfigError(f"{prefix}.recon={self.recon!r}: choose one of {RECON_LOSSES}")
        if self.stft_weight < 0:
            raise ConfigError(f"{prefix}.stft_weight={self.stft_weight}: must be >= 0")
        if self.stft_log_floor <= 0:
            raise ConfigError(f"{prefix}.stft_log_floor={self.stft_log_floor}: must be > 0")
        if not self.stft_fft_sizes or min(self.stft_fft_sizes) < 16:
            raise ConfigError(f"{prefix}.stft_fft_sizes={list(self.stft_fft_sizes)}: give one or "
                              "more FFT sizes >= 16")
        path = self.perceptual_weights_path
        if path and not Path(path).is_file():
            raise ConfigError(f"{prefix}.perceptual_weights_path={path!r}: file not found. Give a "
                              "torchvision VGG16 state dict (e.g. vgg16-397923af.pth from the "
                              "torchvision model zoo, downloaded beforehand) or '' to disable")


def _load_vgg16_features(path: str) -> nn.Sequential:
    from torchvision.models import vgg16

    state = torch.load(path, map_location="cpu", weights_only=True)
    model = vgg16(weights=None)
    if any(k.startswith("features.") for k in state):
        model.load_state_dict(state, strict=False)
        missing = [k for k in model.features.state_dict() if f"features.{k}" not in state]
    else:  # a features-only state dict
        missing = model.features.load_state_dict(state, strict=False).missing_keys
    if missing:
        raise ValueError(f"{path} is not a VGG16 state dict: missing {missing[:4]}")
    return model.features


class PerceptualLoss(nn.Module):
    """LPIPS(VGG) with a locally supplied VGG16 trunk; frozen, inputs in [-1, 1]."""

    def __init__(self, vgg_weights_path: str):
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`
            warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
            self.lpips = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        features = _load_vgg16_features(vgg_weights_path)
        # lpips splits the torchvision trunk into slices whose children keep the original indices.
        for name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
            for idx, layer in getattr(self.lpips.net, name).named_children():
                layer.load_state_dict(features[int(idx)].state_dict())
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lpips(x.float(), y.float()).mean()


def build_perceptual(cfg: TokenizerLossConfig) -> PerceptualLoss | None:
    if cfg.perceptual_weight <= 0:
        return None
    if not cfg.perceptual_weights_path:
        warnings.warn("loss.perceptual_weights_path is empty: the LPIPS perceptual loss is OFF. "
                      "Pass a local torchvision VGG16 state dict to enable it.", stacklevel=2)
        return None
    return PerceptualLoss(cfg.perceptual_weights_path)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a stack of stride-2 kernel-4 convs giving one real/fake logit per patch (2-D for
    images; `dims=1` gives the same stack over a waveform, the optional audio discriminator)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3, dims: int = 2):
        super().__init__()
        conv = conv_of(dims)
        mods: list[nn.Module] = [conv(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [conv(ch, out, 4, stride, 1, bias=False), nn.GroupNorm(min(32, out), out),
                     nn.LeakyReLU(0.2)]
            ch = out
        mods.append(conv(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor,
                        last_layer: torch.Tensor) -> torch.Tensor:
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean L2 (squared error) or L1 distance, `loss.recon`."""
    return F.mse_loss(recon, target) if kind == "l2" else F.l1_loss(recon, target)


def fit_fft_sizes(fft_sizes, clip_samples: int) -> tuple[int, ...]:
    """The FFT sizes a clip of `clip_samples` can take: each halved until at most half the clip
    (the centred STFT reflect-pads n/2 on each side), duplicates dropped, order kept."""
    fitted: list[int] = []
    for n in fft_sizes:
        n = int(n)
        while n > max(16, clip_samples // 2):
            n //= 2
        if n not in fitted:
            fitted.append(n)
    return tuple(fitted)


def stft_magnitude(wave: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| of (B, samples) float32 waveforms: Hann window n_fft, hop n_fft/4, centred."""
    window = torch.hann_window(n_fft, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, n_fft, hop_length=n_fft // 4, win_length=n_fft, window=window,
                      center=True, return_complex=True)
    return (spec.real ** 2 + spec.imag ** 2).clamp_min(1e-7).sqrt()


def multi_resolution_stft_loss(recon: torch.Tensor, target: torch.Tensor, fft_sizes,
                               log_floor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectral convergence, log-magnitude L1 with floor `log_floor`), each averaged over
    `fft_sizes`.

    recon, target: waveforms (B, 1, samples) or (B, samples). Zero for equal inputs."""
    with torch.autocast(recon.device.type, enabled=False):
        x = recon.float().reshape(recon.shape[0], -1)
        y = target.float().reshape(target.shape[0], -1)
        convergence, log_magnitude = [], []
        for n_fft in fit_fft_sizes(fft_sizes, y.shape[-1]):
            mag_x, mag_y = stft_magnitude(x, n_fft), stft_magnitude(y, n_fft)
            convergence.append(torch.linalg.norm(mag_y - mag_x) / torch.linalg.norm(mag_y))
            log_magnitude.append(F.l1_loss((mag_x + log_floor).log(), (mag_y + log_floor).log()))
        return torch.stack(convergence).mean(), torch.stack(log_magnitude).mean()
