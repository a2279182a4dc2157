"""Training losses of the RDPM tokenizer (VQGAN recipe, rdpm.md section 1).

    L = ||x - x'||^2 + quant_weight * L_quant + perceptual_weight * LPIPS(x, x')
        + adaptive_weight * gan_weight * L_gan            (after `gan_start` steps)

Design choices, one line each:
- Perceptual: LPIPS-VGG from the `lpips` package; the VGG16 trunk comes from a local torchvision
  state-dict file (nothing is downloaded), the LPIPS linear heads ship inside the package.
  No file given -> the term is off and a warning says so.
- Discriminator: PatchGAN (VQGAN's NLayerDiscriminator shape), hinge loss.
- Adaptive GAN weight: ||grad L_rec|| / ||grad L_gan|| at the decoder's last layer (VQGAN).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from unimodal.config import ConfigError


@dataclass
class TokenizerLossConfig:
    quant_weight: float = 0.25            # delta
    perceptual_weight: float = 1.0
    perceptual_weights_path: str = ""     # torchvision vgg16 state dict (.pth); "" = perceptual off
    gan_weight: float = 0.75              # eta
    gan_start: int = 2000                 # step at which the discriminator and L_gan switch on
    gan_adaptive_weight: bool = True
    disc_channels: int = 64
    disc_layers: int = 3

    def validate(self, prefix: str = "loss") -> None:
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
    """PatchGAN: a stack of stride-2 4x4 convs giving one real/fake logit per patch."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.GroupNorm(min(32, out), out),
                     nn.LeakyReLU(0.2)]
            ch = out
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
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
