"""The RDPM quantizer against a direct float64 transcription of Algorithm 1, and its invariants."""

import math

import pytest
import torch

from unimodal.tokenizer.rdpm_quantizer import (RDPMQuantizer, nearest_code, rdpm_noise,
                                               rdpm_schedule)


def reference_algorithm1(z, noise, codebook, alphas, bias_fn=None):
    """Algorithm 1 written out per position with explicit loops over codes, in float64."""
    B, d, H, W = z.shape
    T = len(alphas)
    z_t = z.clone()                      # z_1 = v = E(x)
    z_acc = torch.zeros_like(z)          # z'_0 = 0
    codes = torch.zeros(B, T, H, W, dtype=torch.long)
    quant_err = []
    for t in range(T):
        a = alphas[t]
        b = math.sqrt(max(0.0, 1 - a * a))
        v = a * z_t + b * noise[:, t]
        e = torch.zeros_like(v)
        for bi in range(B):
            for i in range(H):
                for j in range(W):
                    dists = ((codebook - v[bi, :, i, j]) ** 2).sum(1)
                    k = int(dists.argmin())
                    codes[bi, t, i, j] = k
                    e[bi, :, i, j] = codebook[k]
        v_q = e + bias_fn(e) if bias_fn is not None else e
        quant_err.append(((v - v_q) ** 2).mean())
        z_acc = z_acc + v_q
        z_t = z_t - v_q
    return codes, z_acc, torch.stack(quant_err)


@pytest.mark.parametrize("schedule", ["pow", "sin", "linear"])
@pytest.mark.parametrize("shared_bias", [False, True])
def test_matches_float64_algorithm1(schedule, shared_bias):
    torch.manual_seed(0)
    T, K, d = 6, 48, 8
    q = RDPMQuantizer(K, d, T, schedule=schedule, shared_bias=shared_bias).double()
    if shared_bias:  # a non-trivial bias conv so the test sees it act
        torch.nn.init.normal_(q.bias_conv.weight, std=0.05)
        torch.nn.init.normal_(q.bias_conv.bias, std=0.05)
    z = torch.randn(2, d, 3, 4, dtype=torch.float64)
    noise = torch.randn(2, T, d, 3, 4, dtype=torch.float64)
    out = q(z, noise=noise)
    alphas = rdpm_schedule(schedule, T).tolist()
    bias_fn = q.bias_conv if shared_bias else None
    with torch.no_grad():
        ref_codes, ref_latent, ref_err = reference_algorithm1(z, noise, q.codebook.detach(),
                                                              alphas, bias_fn)
    assert torch.equal(out.codes, ref_codes)
    torch.testing.assert_close(out.latent.detach(), ref_latent, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.step_losses, ref_err, rtol=1e-12, atol=1e-12)
    gammas = torch.tensor(alphas, dtype=torch.float64)
    torch.testing.assert_close(out.loss.detach(), (gammas * ref_err).sum())


def test_float32_agrees_with_float64():
    torch.manual_seed(1)
    q = RDPMQuantizer(256, 16, 10)
    z = torch.randn(4, 16, 8, 8)
    noise = torch.randn(4, 10, 16, 8, 8)
    codes32 = q(z, noise=noise).codes
    codes64 = q.double()(z.double(), noise=noise.double()).codes
    assert (codes32 == codes64).float().mean() > 0.999


def test_schedules_match_formulas():
    T = 10
    t = torch.arange(1, T + 1, dtype=torch.float64)
    torch.testing.assert_close(rdpm_schedule("sin", T), torch.sin(math.pi / 2 * t / T))
    torch.testing.assert_close(rdpm_schedule("linear", T), t / T)
    torch.testing.assert_close(rdpm_schedule("pow", T, 0.75), 0.75 ** (T - t))
    for kind in ("sin", "linear", "pow"):
        a = rdpm_schedule(kind, T)
        assert a[-1].item() == pytest.approx(1.0)
        assert torch.all(a[1:] >= a[:-1])
    q = RDPMQuantizer(8, 4, T, schedule="sin")
    a, b = torch.tensor(q.alphas, dtype=torch.float64), torch.tensor(q.betas, dtype=torch.float64)
    torch.testing.assert_close(a**2 + b**2, torch.ones(T, dtype=torch.float64))
    with pytest.raises(ValueError, match="cosine"):
        rdpm_schedule("cosine", T)


def test_single_step_is_plain_vq():
    """T = 1, a_1 = 1: codes are the plain nearest neighbours, z'_1 = codebook[code], no noise."""
    torch.manual_seed(2)
    q = RDPMQuantizer(64, 8, steps=1, shared_bias=False)
    z = torch.randn(3, 8, 5, 5)
    out = q(z, noise=torch.randn(3, 1, 8, 5, 5) * 100)  # b_1 = 0, so even huge noise is ignored
    flat = z.movedim(1, -1).reshape(-1, 8)
    plain = torch.cdist(flat, q.codebook.detach()).argmin(1).view(3, 5, 5)
    assert torch.equal(out.codes[:, 0], plain)
    torch.testing.assert_close(out.latent.detach(), q.codebook.detach()[plain].movedim(-1, 1))


def test_noise_regenerates_exactly_from_seed():
    a = rdpm_noise([7, 123456789012345], 10, (4, 3, 3))
    b = rdpm_noise(torch.tensor([7, 123456789012345]), 10, (4, 3, 3))
    assert torch.equal(a, b)
    g = torch.Generator("cpu").manual_seed(7)
    assert torch.equal(a[0], torch.randn((10, 4, 3, 3), generator=g))  # the documented contract
    assert not torch.equal(a[0], a[1])
    with pytest.raises(ValueError, match="seed"):
        rdpm_noise([-1], 2, (1,))


def test_seeded_quantize_is_deterministic_and_decodes_from_codes():
    torch.manual_seed(3)
    q = RDPMQuantizer(128, 8, 10)
    torch.nn.init.normal_(q.bias_conv.weight, std=0.05)
    z = torch.randn(2, 8, 4, 4)
    out1, out2 = q(z, seeds=[5, 6]), q(z, seeds=[5, 6])
    assert torch.equal(out1.codes, out2.codes)
    torch.testing.assert_close(q.codes_to_latent(out1.codes), out1.latent.detach())
    assert not torch.equal(q(z, seeds=[5, 7]).codes[1], out1.codes[1])


@pytest.mark.parametrize("grid", [(12,), (4, 4), (2, 3, 3)])
def test_any_spatial_rank(grid):
    q = RDPMQuantizer(32, 6, 4, spatial_rank=len(grid))
    z = torch.randn(2, 6, *grid)
    out = q(z, seeds=[0, 1])
    assert out.codes.shape == (2, 4, *grid)
    assert out.latent.shape == z.shape
    torch.testing.assert_close(q.codes_to_latent(out.codes), out.latent.detach())


def test_residual_shrinks_and_straight_through_gradient():
    torch.manual_seed(4)
    q = RDPMQuantizer(512, 4, 8)
    z = torch.randn(2, 4, 6, 6, requires_grad=True)
    out = q(z, seeds=[1, 2])
    partial = [((q.codes_to_latent(out.codes, upto=t) - z) ** 2).mean().item() for t in (1, 8)]
    assert partial[1] < partial[0]  # accumulating steps approaches the latent
    out.latent.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # identity straight-through


def test_dead_codes_are_revived_from_inputs():
    torch.manual_seed(5)
    q = RDPMQuantizer(64, 4, 2, dead_code_after=1).train()
    q.codebook.data[10:] += 1000.0  # far away: never picked
    z = torch.randn(4, 4, 4, 4)
    out = q(z, seeds=[0, 1, 2, 3])
    assert out.usage < 0.5
    assert q.codebook.data[10:].abs().max() > 100  # forward alone changes nothing
    q.revive_dead_codes(out)
    assert q.codebook.data[10:].abs().max() < 100  # moved next to real inputs
    assert q(z, seeds=[0, 1, 2, 3]).usage > out.usage
    with pytest.raises(ValueError, match="training mode"):
        q.revive_dead_codes(q.eval()(z, seeds=[0, 1, 2, 3]))


def test_bad_latent_shape_is_a_clear_error():
    q = RDPMQuantizer(16, 4, 2)
    with pytest.raises(ValueError, match=r"\(B, 4, \*grid\)"):
        q(torch.randn(1, 5, 2, 2), seeds=[0])


def test_nearest_code_ignores_autocast_precision():
    v = torch.randn(100, 8)
    c = torch.randn(32, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        idx = nearest_code(v, c)
    assert torch.equal(idx, torch.cdist(v, c).argmin(1))


def test_threaded_noise_equals_per_sample_noise():
    seeds = list(range(500, 540))  # large enough to be split over threads
    batch = rdpm_noise(seeds, 3, (2, 4))
    for i, s in enumerate(seeds):
        assert torch.equal(batch[i], rdpm_noise([s], 3, (2, 4))[0])
