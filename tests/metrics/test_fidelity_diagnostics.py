"""Fidelity tooling: per-step quantizer statistics, the checker on reconstructions, and the
distance/latent code heads against the quantizer (the generator diagnostics are in
test_generator_diagnostics.py, eval/recon.py in test_recon_eval.py)."""

import numpy as np
import pytest
import torch

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.config import ConfigError
from unimodal.data.shapes import ShapesDataset
from unimodal.metrics.shapes_checker import (ShapesAccuracy, score_reconstructions, spec_for_key,
                                             spec_from_objects)
from unimodal.model.sampling import guide
from unimodal.model.objectives.rdpm import RDPMBlockInput
from unimodal.model.unified import UnifiedModelConfig
from unimodal.tokenizer.rdpm_quantizer import RDPMQuantizer, rdpm_schedule
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig


def tiny_tokenizer(**kw) -> RDPMTokenizer:
    return tiny_rdpm_tokenizer(**{"latent_dim": 4, "code_maps": 5, **kw})


def test_step_statistics_agree_with_the_quantizer_forward():
    torch.manual_seed(1)
    q = RDPMQuantizer(64, 4, 5).eval()
    torch.nn.init.normal_(q.bias_conv.weight, std=0.05)
    z, noise = torch.randn(3, 4, 6, 6), torch.randn(3, 5, 4, 6, 6)
    stats, codes = q.step_statistics(z, noise)
    out = q(z, noise=noise)
    assert torch.equal(codes, out.codes)
    torch.testing.assert_close(stats["quant_error"], out.step_losses)
    torch.testing.assert_close(stats["final_error"][0], ((z - out.latent) ** 2).mean())
    torch.testing.assert_close(stats["residual_var"][0], (z ** 2).mean())
    alphas = rdpm_schedule("pow", 5)
    torch.testing.assert_close(stats["content_var"][-1], stats["residual_var"][-1] * alphas[-1].item() ** 2)
    assert ((stats["usage"] > 0) & (stats["usage"] <= 1)).all()


def test_noise_scale_multiplies_the_noise_weights():
    full, half = RDPMQuantizer(8, 2, 6), RDPMQuantizer(8, 2, 6, noise_scale=0.5)
    np.testing.assert_allclose(half.betas, [0.5 * b for b in full.betas])
    assert half.betas[-1] == 0.0 and half.alphas == full.alphas
    with pytest.raises(ConfigError, match="model.noise_scale"):
        RDPMTokenizerConfig(noise_scale=1.5).validate()


def test_checker_scores_perfect_reconstructions_100_and_blank_ones_0():
    data = ShapesDataset(24, image_size=64, seed=0, offset=5000)
    items = [data[i] for i in range(len(data))]
    images, keys = torch.stack([it["image"] for it in items]), [it["key"] for it in items]
    perfect = ShapesAccuracy()
    assert score_reconstructions(perfect, images, keys) == 24
    assert perfect.compute()["prompt"] == 1.0
    blank = ShapesAccuracy()
    score_reconstructions(blank, torch.zeros_like(images), keys)  # flat grey: no object found
    assert blank.compute()["prompt"] == 0.0 and blank.compute()["color"] == 0.0
    assert score_reconstructions(ShapesAccuracy(), images[:2], ["folder/a.png", "b"]) == 0
    assert spec_for_key(keys[3]) == spec_from_objects(data.sample(3).objects)


@pytest.mark.parametrize("code_head", ["distance", "latent"])
def test_distance_heads_recover_the_quantizer_codes_from_the_true_latent(code_head):
    """With the exact target (v_t for `distance`, z for `latent`) the logits' argmax is C_t at
    every step: the head is the quantizer's own nearest-neighbour rule."""
    tok = tiny_tokenizer()
    images, seeds = torch.rand(2, 3, 32, 32) * 2 - 1, [11, 12]
    noise = tok.quantizer.noise(seeds, (4, 8, 8))
    with torch.no_grad():
        z = tok.encoder(images)
        codes = tok.quantizer(z, noise=noise).codes
    block = RDPMBlockInput(tok.cfg, width=4, code_head=code_head)
    block.quantizer.load_state_dict(tok.quantizer.state_dict())
    with torch.no_grad():
        block.head_proj.weight.copy_(torch.eye(4))
        block.head_proj.bias.zero_()
        block.log_inv_tau.fill_(2.0)
    steps = torch.ones(2, dtype=torch.long)
    for t in range(1, 6):
        latent_prev = block.latent_before(codes, steps * t)
        ctx = block.context(latent_prev, noise[:, t - 1], steps * t)
        if code_head == "latent":
            target = z
        else:
            q = tok.quantizer
            target = q.alphas[t - 1] * (z - latent_prev) + q.betas[t - 1] * noise[:, t - 1]
        hidden = target.flatten(2).transpose(1, 2).reshape(-1, 4)
        logits = block.distance_logits(hidden, ctx)
        assert torch.equal(logits.argmax(-1), codes[:, t - 1].flatten()), f"step {t}"


@pytest.mark.parametrize("code_head", ["distance", "latent"])
def test_guidance_on_distance_logits_is_an_extrapolated_latent(code_head):
    """cond + lambda (cond - uncond) over distance logits equals (up to a per-position constant,
    which softmax ignores) the distance logits of the extrapolated prediction
    (1 + lambda) pred_cond - lambda pred_uncond: CFG moves the predicted latent, so a large
    lambda overshoots it (README: "A lower loss is not better prompt following")."""
    torch.manual_seed(3)
    tok = tiny_tokenizer()
    block = RDPMBlockInput(tok.cfg, width=16, code_head=code_head)
    steps = torch.tensor([4, 5])    # the last two of T = 5
    ctx = block.context(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), steps)
    cond, uncond, scale = torch.randn(128, 16), torch.randn(128, 16), 2.0
    with torch.no_grad():
        block.log_inv_tau.normal_()
        guided = guide(block.distance_logits(cond, ctx), block.distance_logits(uncond, ctx), scale)
        moved = block.distance_logits((1 + scale) * cond - scale * uncond, ctx)
    offset = guided - moved
    torch.testing.assert_close(offset, offset[:, :1].expand_as(offset), rtol=0, atol=1e-3)
    assert not torch.equal(guided.argmax(-1), block.distance_logits(cond, ctx).argmax(-1))


def test_unknown_code_head_is_a_config_error():
    with pytest.raises(ConfigError, match="model.code_head='mlp'"):
        UnifiedModelConfig(code_head="mlp").validate()


def test_seed_agreement_is_the_share_of_codes_the_input_alone_fixes():
    # Without noise (noise_scale = 0) the codes are a function of the input: agreement 1 at every
    # step. With the paper's noise the first step's input is ~99% noise (b_1 = 0.99), so another
    # draw changes most of its codes; the last step (b_T = 0) still depends on the earlier picks.
    from unimodal.tokenizer.diagnostics import StepDiagnostics

    images = torch.rand(4, 3, 32, 32) * 2 - 1
    agreement = {}
    for scale in (0.0, 1.0):
        torch.manual_seed(0)
        tok = tiny_tokenizer(noise_scale=scale).eval()
        meter = StepDiagnostics()
        meter.update(tok, images, tok.quantizer.noise([1, 2, 3, 4], (4, 8, 8)), prefix_psnr=False)
        agreement[scale] = meter.compute()["seed_agreement"]
    assert agreement[0.0] == [1.0] * 5
    assert agreement[1.0][0] < 0.5
