"""Convolutional encoder/decoder of the RDPM image tokenizer (VQGAN-style).

Design choices, one line each:
- Residual blocks (GroupNorm, SiLU, 3x3 conv) with a stride-2 conv per downsampling level; the
  decoder mirrors the encoder with nearest-neighbour upsampling + conv.
- Downsampling factor = 2 ** (len(channel_mult) - 1): (1, 1, 2, 2, 4) is the paper's f16.
- Optional single-head self-attention in the middle block (VQGAN has one; off for the tiny size).
- The encoder ends in a 1x1 conv to the latent width and a LayerNorm over channels, so the latent
  has the same scale as the unit Gaussian noise the quantizer mixes in (the paper's one addition).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(y.transpose(1, 2).reshape(b, c, h, w))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, channels: int, affine: bool = True, gain_init: float = 1.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=affine)
        self.gain_init = gain_init
        if affine:
            nn.init.constant_(self.norm.weight, gain_init)

    def gain(self) -> torch.Tensor:
        """Per-channel gain (a constant when the norm has no affine parameters)."""
        if self.norm.weight is None:
            return torch.full((self.norm.normalized_shape[0],), self.gain_init)
        return self.norm.weight.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x.movedim(1, -1)).movedim(-1, 1)
        return y if self.norm.weight is not None else y * self.gain_init


def _mid_block(ch: int, attention: bool) -> nn.Sequential:
    layers = [ResBlock(ch, ch)]
    if attention:
        layers.append(SelfAttention2d(ch))
    layers.append(ResBlock(ch, ch))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, base_channels: int, channel_mult: tuple[int, ...],
                 num_res_blocks: int, latent_dim: int, mid_attention: bool,
                 latent_norm_affine: bool = True, latent_gain_init: float = 1.0):
        super().__init__()
        chans = [base_channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = chans[0]
        for level, out_ch in enumerate(chans):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, out_ch))
                ch = out_ch
            if level < len(chans) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = _mid_block(ch, mid_attention)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, latent_dim, 1)
        self.latent_norm = ChannelLayerNorm(latent_dim, latent_norm_affine, latent_gain_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.latent_norm(self.conv_out(F.silu(self.norm_out(h))))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, out_channels: int, base_channels: int, channel_mult: tuple[int, ...],
                 num_res_blocks: int, latent_dim: int, mid_attention: bool):
        super().__init__()
        chans = [base_channels * m for m in channel_mult]
        ch = chans[-1]
        self.conv_in = nn.Conv2d(latent_dim, ch, 3, padding=1)
        self.mid = _mid_block(ch, mid_attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(chans))):
            for _ in range(num_res_blocks + 1):
                layers.append(ResBlock(ch, chans[level]))
                ch = chans[level]
            if level > 0:
                layers.append(Upsample(ch))
        self.up = nn.Sequential(*layers)
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The weight the VQGAN adaptive GAN weight is measured on."""
        return self.conv_out.weight
