"""Per-step tokenizer diagnostics (unimodal/tokenizer/diagnostics.py): running means over batches,
the prefix PSNR against decoding C_1..C_t by hand (ending at the full reconstruction), the latent
gain statistics, and the plot."""

import math

import pytest
import torch

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.metrics.reconstruction import psnr_per_image
from unimodal.tokenizer.diagnostics import StepDiagnostics, latent_gain_stats, plot_step_diagnostics


def tiny_tokenizer(**kw):
    return tiny_rdpm_tokenizer(**{"latent_dim": 4, "code_maps": 5, **kw})


def test_latent_gain_init_and_no_affine():
    model = tiny_tokenizer(latent_gain_init=3.0)
    assert latent_gain_stats(model)["gain_mean"] == pytest.approx(3.0)
    z = model.encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    torch.testing.assert_close(z.pow(2).mean(1), torch.full((2, 8, 8), 9.0), atol=0.1, rtol=0)
    plain = tiny_tokenizer(latent_norm_affine=False, latent_gain_init=2.0)
    assert plain.encoder.latent_norm.norm.weight is None
    assert latent_gain_stats(plain)["gain_min"] == pytest.approx(2.0)


def test_latent_gain_stats_by_hand():
    model = tiny_tokenizer()
    with torch.no_grad():
        model.encoder.latent_norm.norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    stats = latent_gain_stats(model)
    assert stats == pytest.approx({"gain_mean": 3.0, "gain_std": math.sqrt(14 / 3),   # unbiased
                                   "gain_min": 1.0, "gain_max": 6.0})
    one = tiny_tokenizer(latent_dim=1)
    assert latent_gain_stats(one)["gain_std"] == 0.0                                  # no NaN


def test_prefix_psnr_ends_at_the_reconstruction_and_plots(tmp_path):
    model = tiny_tokenizer()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    seeds = [5, 6, 7, 8]
    meter = StepDiagnostics()
    meter.update(model, images, model.quantizer.noise(seeds, (4, 8, 8)))
    result = meter.compute()
    assert all(len(result[k]) == 5 for k in ("quant_error", "prefix_psnr", "usage"))
    with torch.no_grad():
        full = psnr_per_image(images, model.decode(model.encode(images, seeds)).clamp(-1, 1)).mean()
    assert result["prefix_psnr"][-1] == pytest.approx(full.item(), abs=1e-3)
    path = plot_step_diagnostics(result, tmp_path / "steps.png")
    assert path.stat().st_size > 1000


def test_prefix_psnr_decodes_the_first_t_code_maps():
    model = tiny_tokenizer()
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    noise = model.quantizer.noise([1, 2, 3], (4, 8, 8))
    meter = StepDiagnostics()
    meter.update(model, images, noise)
    result = meter.compute()
    with torch.no_grad():
        codes = model.quantizer(model.encoder(images), noise=noise).codes      # (B, T, h, w)
        for t in (1, 3):
            latent = sum(model.quantizer.embed_step(codes[:, s]) for s in range(t))
            expected = psnr_per_image(images, model.decoder(latent).clamp(-1, 1)).mean()
            assert result["prefix_psnr"][t - 1] == pytest.approx(expected.item(), abs=1e-4)


def test_running_means_over_batches():
    model = tiny_tokenizer()
    batches = [(torch.rand(2, 3, 32, 32) * 2 - 1, model.quantizer.noise([s, s + 1], (4, 8, 8)))
               for s in (0, 10)]
    single = []
    for images, noise in batches:
        meter = StepDiagnostics()
        meter.update(model, images, noise, prefix_psnr=False)
        single.append(meter.compute())
    both = StepDiagnostics()
    for images, noise in batches:
        both.update(model, images, noise, prefix_psnr=False)
    result = both.compute()
    assert both.batches == 2 and "prefix_psnr" not in result
    assert set(result) == set(single[0]) and len(result["final_error"]) == 1
    for key, values in result.items():
        assert values == pytest.approx([(a + b) / 2 for a, b in zip(single[0][key], single[1][key])],
                                       rel=1e-5), key
    assert single[0]["quant_error"] != single[1]["quant_error"]      # the batches differ
    assert StepDiagnostics().compute() == {}
