"""The tokenizer's convolutional encoder and decoder (unimodal/tokenizer/autoencoder.py): shapes
for each downsampling factor, the latent LayerNorm against a hand computation, the attention block
against explicit softmax attention, and the residual/upsampling wiring."""

import math

import pytest
import torch
import torch.nn.functional as F

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.tokenizer.autoencoder import (ChannelLayerNorm, Decoder, Encoder, ResBlock,
                                            SelfAttention2d, Upsample)


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
    assert sum(isinstance(m, SelfAttention2d) for m in enc.modules()) == 1
    assert dec.last_layer_weight is dec.conv_out.weight
    plain = Encoder(3, 8, mult, 1, 5, mid_attention=False)
    assert not any(isinstance(m, SelfAttention2d) for m in plain.modules())


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
    attn = SelfAttention2d(8)
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
