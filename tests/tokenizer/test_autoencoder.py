"""The tokenizer's convolutional encoder and decoder (unimodal/tokenizer/autoencoder.py).

Dims-generic: the image model is the one of the 2-D-only code it replaced (same state-dict keys,
bit-equal initial weights and codes, the same reconstruction), the 1-D audio model divides and
restores the waveform length by the product of its per-level strides, and the 3-D video model does
so per axis with (time, height, width) strides. The blocks: shapes for each downsampling factor,
the latent LayerNorm against a hand computation, the attention block against explicit softmax
attention, and the residual/upsampling wiring."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.tokenizer.autoencoder import (ChannelLayerNorm, Decoder, Encoder, GroupNorm,
                                            ResBlock, SelfAttention, Upsample, level_strides)
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig

# Recorded from the 2-D-only autoencoder (commit 97da77f) before it became dims-generic, by
# building the model below with torch.manual_seed(0) and running it on the input below.
PINNED = {
    "keys": "6ad0eaa3189d3a771f7c6530c16be7f0b740c93320682832661bfc0ea4d1d70b",
    "state": "e79db82358d44680cfe82aea4c8914a5efd4c71570b4434c0e87219746c1d5a5",
    "codes": "d674c3b89a1993cdf7855f887a01b73194f958f7c060b4fc4fdbabcb04cf83b4",
    "recon_sum": 84.26548762992024, "recon_abs_sum": 1720.9781351946294,
    "recon_first_pixel": [0.04891654849052429, -0.10756221413612366, -0.15966466069221497],
    "paper_keys": "c7d3969bff374efad44bc1c4a1610f67c091d913082b6b074a5c2f28c3bbc7ad",
}


def _build(**overrides) -> RDPMTokenizer:
    torch.manual_seed(0)
    cfg = RDPMTokenizerConfig(**{"image_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2],
                                 "latent_dim": 8, "codebook_size": 64, "code_maps": 5,
                                 "mid_attention": True, "num_res_blocks": 1, **overrides})
    return RDPMTokenizer(cfg).eval()


def _keys_hash(state: dict) -> str:
    return hashlib.sha256("\n".join(f"{k}:{tuple(v.shape)}" for k, v in state.items())
                          .encode()).hexdigest()


def test_image_model_is_bit_identical_to_the_2d_only_code():
    model = _build()
    state = model.state_dict()
    assert _keys_hash(state) == PINNED["keys"] and len(state) == 146
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    assert digest.hexdigest() == PINNED["state"]  # initial weights: bit-equal
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        recon, q = model(x, seeds=[3, 4])
    assert hashlib.sha256(q.codes.numpy().tobytes()).hexdigest() == PINNED["codes"]
    # The forward was bit-equal on the recording box at 2 threads; other thread counts or CPUs
    # may sum the convolutions in another order, so the output is compared to float32 rounding.
    assert recon.double().sum().item() == pytest.approx(PINNED["recon_sum"], rel=1e-6)
    assert recon.double().abs().sum().item() == pytest.approx(PINNED["recon_abs_sum"], rel=1e-6)
    assert recon[0, :, 0, 0].tolist() == pytest.approx(PINNED["recon_first_pixel"], abs=1e-6)


def test_paper_size_keys_are_unchanged():
    model = _build(size="paper_f16", image_size=256, base_channels=128,
                   channel_mult=[1, 1, 2, 2, 4], num_res_blocks=2, latent_dim=32,
                   codebook_size=4096, code_maps=10)
    assert _keys_hash(model.state_dict()) == PINNED["paper_keys"]


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("strides", [(4, 4, 4, 5), (2, 5, 3, 2)])
def test_1d_model_divides_and_restores_the_length(strides, upsample):
    mult = (1, 2, 2, 4, 4)
    enc = Encoder(1, 8, mult, 1, 4, mid_attention=True, dims=1, strides=strides)
    dec = Decoder(1, 8, mult, 1, 4, mid_attention=True, dims=1, strides=strides, upsample=upsample)
    hop = 1
    for s in strides:
        hop *= s
    wave = torch.randn(2, 1, 3 * hop)
    z = enc(wave)
    assert z.shape == (2, 4, 3)
    assert dec(z).shape == wave.shape
    assert all(isinstance(m, torch.nn.Conv1d) for m in enc.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))


def test_strides_must_match_the_levels():
    assert level_strides((1, 2, 2), None) == (2, 2)
    with pytest.raises(ValueError, match=r"strides=\[4\]: need 2"):
        level_strides((1, 2, 2), (4,))


@pytest.mark.parametrize("mult,grid", [((1,), 16), ((1, 2), 8), ((1, 2, 2, 4), 2)])
def test_encoder_and_decoder_shapes_follow_the_downsampling_factor(mult, grid):
    torch.manual_seed(0)
    enc = Encoder(3, 8, mult, num_res_blocks=1, latent_dim=5, mid_attention=True)
    dec = Decoder(3, 8, mult, num_res_blocks=1, latent_dim=5, mid_attention=True)
    z = enc(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 5, grid, grid)              # 16 / 2 ** (len(mult) - 1)
    assert dec(z).shape == (2, 3, 16, 16)
    strided = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == len(mult) - 1
    assert sum(isinstance(m, Upsample) for m in dec.modules()) == len(mult) - 1
    assert sum(isinstance(m, SelfAttention) for m in enc.modules()) == 1
    assert dec.last_layer_weight is dec.conv_out.weight
    plain = Encoder(3, 8, mult, 1, 5, mid_attention=False)
    assert not any(isinstance(m, SelfAttention) for m in plain.modules())


def test_encoder_latent_is_layer_normed():
    model = tiny_rdpm_tokenizer(code_maps=5)
    z = model.encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    torch.testing.assert_close(z.mean(1), torch.zeros(2, 8, 8), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.var(1, unbiased=False), torch.ones(2, 8, 8), atol=1e-2, rtol=0)


def test_channel_layer_norm_matches_a_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 5) * 3 + 1
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + 1e-5)
    norm = ChannelLayerNorm(4, affine=True, gain_init=2.0)
    torch.testing.assert_close(norm(x), 2.0 * normed)
    assert torch.equal(norm.gain(), torch.full((4,), 2.0))
    with torch.no_grad():
        norm.norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.norm.bias.fill_(0.5)
    torch.testing.assert_close(norm(x), normed * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None, None] + 0.5)
    assert norm.gain().tolist() == [1.0, 2.0, 3.0, 4.0] and not norm.gain().requires_grad
    fixed = ChannelLayerNorm(4, affine=False, gain_init=0.5)
    assert fixed.norm.weight is None and not list(fixed.parameters())
    torch.testing.assert_close(fixed(x), 0.5 * normed)
    assert torch.equal(fixed.gain(), torch.full((4,), 0.5))


def test_self_attention_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    attn = SelfAttention(8)
    x = torch.randn(2, 8, 3, 4)
    b, c, h, w = x.shape
    qkv = F.conv2d(attn.norm(x), attn.qkv.weight, attn.qkv.bias).reshape(b, 3, c, h * w)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]                               # (b, c, hw)
    weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # (b, hw, hw)
    y = (weights @ v.transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
    expected = x + F.conv2d(y, attn.out.weight, attn.out.bias)
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_res_block_is_skip_plus_residual():
    torch.manual_seed(0)
    same, wider = ResBlock(8, 8), ResBlock(8, 16)
    assert isinstance(same.skip, torch.nn.Identity) and wider.skip.kernel_size == (1, 1)
    x = torch.randn(2, 8, 4, 4)
    for block in (same, wider):
        with torch.no_grad():
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        torch.testing.assert_close(block(x), block.skip(x))     # the residual branch is off
    with torch.no_grad():
        same.conv2.bias.fill_(1.0)
    torch.testing.assert_close(same(x), x + 1.0)


def test_upsample_is_nearest_then_conv():
    up = Upsample(2)
    with torch.no_grad():   # the conv as the identity: what is left is the nearest upsampling
        up.conv.weight.zero_()
        up.conv.bias.zero_()
        for c in range(2):
            up.conv.weight[c, c, 1, 1] = 1.0
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert torch.equal(up(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("strides, grid", [(((1, 2, 2), (2, 2, 2)), (4, 4, 4)),
                                           (((2, 2, 2), (2, 2, 2)), (2, 4, 4))])
def test_3d_model_divides_and_restores_each_axis_by_its_strides(strides, grid, upsample):
    mult = (1, 2, 2)
    enc = Encoder(3, 8, mult, 1, 4, mid_attention=True, dims=3, strides=strides)
    dec = Decoder(3, 8, mult, 1, 4, mid_attention=True, dims=3, strides=strides, upsample=upsample)
    clips = torch.randn(2, 3, 8, 16, 16)  # (B, C, F, H, W)
    z = enc(clips)
    assert z.shape == (2, 4, *grid)
    assert dec(z).shape == clips.shape
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert all(isinstance(m, torch.nn.Conv3d) for m in convs)
    assert enc.down[1].stride == strides[0]  # the first level's strided conv, per axis


def test_int_strides_build_the_modules_they_did_before():
    """An int stride keeps int kernel/stride/padding (an audio model is unchanged), a tuple one is
    per axis; both give the same conv for equal axes."""
    assert level_strides((1, 2, 2), ((1, 2, 2), (2, 2, 2))) == ((1, 2, 2), (2, 2, 2))
    with pytest.raises(ValueError, match="positive ints"):
        level_strides((1, 2, 2), ((0, 2, 2), (2, 2, 2)))
    enc = Encoder(1, 8, (1, 2), 1, 4, mid_attention=False, dims=1, strides=(4,))
    assert (enc.down[1].kernel_size, enc.down[1].stride, enc.down[1].padding) == ((7,), (4,), (3,))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_group_norm_matches_torchs_on_either_layout(layout):
    # The CPU training path of a channels-last map goes through a contiguous copy: same values,
    # same gradients, and the output keeps the input's layout (the next conv expects it).
    torch.manual_seed(0)
    ours, ref = GroupNorm(8, 16, eps=1e-6), torch.nn.GroupNorm(8, 16, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 16, 10, 12).contiguous(memory_format=layout)
    upstream = torch.randn(3, 16, 10, 12)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), ref(x_ref)
    assert y_ours.is_contiguous(memory_format=layout)
    torch.testing.assert_close(y_ours, y_ref)
    (y_ours * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
