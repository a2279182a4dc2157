"""Convolutional encoder/decoder of the RDPM tokenizer (VQGAN-style), for images, audio and video.

Design choices, one line each:
- Dims-generic: `dims` = 2 builds Conv2d (images, (B, C, H, W)), 1 builds Conv1d (waveforms,
  (B, 1, samples)), 3 builds Conv3d (clips, (B, C, F, H, W)); module names and creation order do not depend on it, so an image model's
  state-dict keys and initial weights are those of the 2-D-only code before (tests pin this).
- Residual blocks (GroupNorm, SiLU, kernel-3 conv) with a strided conv per downsampling level; the
  decoder mirrors the encoder with nearest-neighbour upsampling + conv.
- Per-level strides s (default 2): downsampling conv kernel 2s - 1, padding s - 1, so a length
  divisible by s is divided exactly; s = 2 gives the 3x3 / stride 2 / padding 1 of the image
  model. Audio takes large strides (4, 4, 4, 5: 320 samples per code).
- A level's stride may also be a tuple, one per axis (video: (2, 2, 2) or (1, 2, 2) to keep the
  frames at that level); every formula then applies per axis. An int stride builds exactly the
  modules it did before (int kernel/stride/padding), so image and audio weights stay bit-equal.
- Upsampling `nearest` (images): repeat s times, then a conv of kernel 2s - 1. `transposed`
  (audio, as in SoundStream/EnCodec): a transposed conv of kernel 2s, stride s, whose s output
  phases have their own taps, so a code's run of samples need not start from a constant (after
  a nearest repeat only the convs' reach across run edges breaks translation equivariance).
- Downsampling factor = prod(strides): (1, 1, 2, 2, 4) with strides 2 is the paper's f16.
- Optional single-head self-attention in the middle block (VQGAN has one; off for the tiny size).
- The encoder ends in a 1x1 conv to the latent width and a LayerNorm over channels, so the latent
  has the same scale as the unit Gaussian noise the quantizer mixes in (the paper's one addition).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED_CONVS = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
UPSAMPLING = ("nearest", "transposed")


def conv_of(dims: int) -> type[nn.Module]:
    if dims not in CONVS:
        raise ValueError(f"dims={dims!r}: the autoencoder is 1-D (audio), 2-D (images) or 3-D")
    return CONVS[dims]


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm that trains a channels-last map on the CPU through a contiguous copy.

    The decoder's maps are channels-last (the latent LayerNorm hands back a moved view, and the
    convolutions keep that layout, which suits oneDNN). The CPU GroupNorm backward is several times
    slower on that layout than on a contiguous one, and the two copies around it cost less than
    that saves: a CPU tokenizer step is about 5% faster (README "Set up and run"). Same parameters, same state
    dict.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_grad_enabled() and x.dim() == 4
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            y = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
            return y.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def _norm(channels: int) -> nn.GroupNorm:
    return GroupNorm(min(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dims: int = 2):
        super().__init__()
        conv = conv_of(dims)
        self.norm1, self.conv1 = _norm(in_ch), conv(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = _norm(out_ch), conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all grid positions (pixels or audio frames)."""

    def __init__(self, channels: int, dims: int = 2):
        super().__init__()
        conv = conv_of(dims)
        self.norm = _norm(channels)
        self.qkv = conv(channels, 3 * channels, 1)
        self.out = conv(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(y.transpose(1, 2).reshape(x.shape))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, *grid) map."""

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


def _mid_block(ch: int, attention: bool, dims: int) -> nn.Sequential:
    layers = [ResBlock(ch, ch, dims)]
    if attention:
        layers.append(SelfAttention(ch, dims))
    layers.append(ResBlock(ch, ch, dims))
    return nn.Sequential(*layers)


Stride = int | tuple[int, ...]  # one for every axis, or one per axis (video: (t, h, w))


def _axes(stride: Stride) -> tuple[int, ...]:
    return stride if isinstance(stride, tuple) else (stride,)


def level_strides(channel_mult: tuple[int, ...], strides: tuple[Stride, ...] | None
                  ) -> tuple[Stride, ...]:
    """One stride per level transition (len(channel_mult) - 1); None or () means 2 everywhere."""
    if not strides:
        return (2,) * (len(channel_mult) - 1)
    if len(strides) != len(channel_mult) - 1 or min(min(_axes(s)) for s in strides) < 1:
        raise ValueError(f"strides={list(strides)}: need {len(channel_mult) - 1} positive ints, "
                         f"one per level transition of channel_mult={list(channel_mult)}")
    return tuple(strides)


def _per_axis(stride: Stride, rule) -> int | tuple[int, ...]:
    """`rule(s)` for an int stride, or per axis for a tuple (kernel, padding, ... per axis)."""
    return tuple(rule(s) for s in stride) if isinstance(stride, tuple) else rule(stride)


def _strided_conv(ch: int, stride: Stride, dims: int) -> nn.Module:
    return conv_of(dims)(ch, ch, _per_axis(stride, lambda s: 2 * s - 1), stride=stride,
                         padding=_per_axis(stride, lambda s: s - 1))


class Encoder(nn.Module):
    def __init__(self, in_channels: int, base_channels: int, channel_mult: tuple[int, ...],
                 num_res_blocks: int, latent_dim: int, mid_attention: bool,
                 latent_norm_affine: bool = True, latent_gain_init: float = 1.0, dims: int = 2,
                 strides: tuple[Stride, ...] | None = None):
        super().__init__()
        conv, strides = conv_of(dims), level_strides(channel_mult, strides)
        chans = [base_channels * m for m in channel_mult]
        self.conv_in = conv(in_channels, chans[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = chans[0]
        for level, out_ch in enumerate(chans):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, out_ch, dims))
                ch = out_ch
            if level < len(chans) - 1:
                layers.append(_strided_conv(ch, strides[level], dims))
        self.down = nn.Sequential(*layers)
        self.mid = _mid_block(ch, mid_attention, dims)
        self.norm_out = _norm(ch)
        self.conv_out = conv(ch, latent_dim, 1)
        self.latent_norm = ChannelLayerNorm(latent_dim, latent_norm_affine, latent_gain_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.latent_norm(self.conv_out(F.silu(self.norm_out(h))))


def _transposed_geometry(s: int) -> tuple[int, int, int]:
    """(kernel, padding, output_padding) taking length L to L * s exactly:
    (L - 1) s - 2p + 2s + (s mod 2) with p = ceil(s/2); an axis of stride 1 (video frames kept
    at a level) takes kernel 3, padding 1, since output_padding must stay below the stride."""
    if s == 1:
        return 3, 1, 0
    return 2 * s, (s + s % 2) // 2, s % 2


class Upsample(nn.Module):
    def __init__(self, ch: int, stride: Stride = 2, dims: int = 2, mode: str = "nearest"):
        super().__init__()
        if mode not in UPSAMPLING:
            raise ValueError(f"upsample={mode!r}: choose one of {UPSAMPLING}")
        self.stride, self.mode = stride, mode
        if mode == "nearest":
            self.conv = conv_of(dims)(ch, ch, _per_axis(stride, lambda s: 2 * s - 1),
                                      padding=_per_axis(stride, lambda s: s - 1))
        else:
            kernel, padding, output_padding = (
                _per_axis(stride, lambda s, i=i: _transposed_geometry(s)[i]) for i in range(3))
            self.conv = TRANSPOSED_CONVS[dims](ch, ch, kernel, stride=stride, padding=padding,
                                               output_padding=output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            return self.conv(x)
        scale = _per_axis(self.stride, float)
        return self.conv(F.interpolate(x, scale_factor=scale, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, out_channels: int, base_channels: int, channel_mult: tuple[int, ...],
                 num_res_blocks: int, latent_dim: int, mid_attention: bool, dims: int = 2,
                 strides: tuple[Stride, ...] | None = None, upsample: str = "nearest"):
        super().__init__()
        conv, strides = conv_of(dims), level_strides(channel_mult, strides)
        chans = [base_channels * m for m in channel_mult]
        ch = chans[-1]
        self.conv_in = conv(latent_dim, ch, 3, padding=1)
        self.mid = _mid_block(ch, mid_attention, dims)
        layers: list[nn.Module] = []
        for level in reversed(range(len(chans))):
            for _ in range(num_res_blocks + 1):
                layers.append(ResBlock(ch, chans[level], dims))
                ch = chans[level]
            if level > 0:
                layers.append(Upsample(ch, strides[level - 1], dims, upsample))
        self.up = nn.Sequential(*layers)
        self.norm_out = _norm(ch)
        self.conv_out = conv(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The weight the VQGAN adaptive GAN weight is measured on."""
        return self.conv_out.weight
