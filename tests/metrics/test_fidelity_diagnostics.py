"""Fidelity tooling: per-step quantizer statistics, the checker on reconstructions,
the distance/latent code heads against the quantizer, and the generator diagnostics."""

import json

import numpy as np
import pytest
import torch

from unified_fixtures import load_script, make_assets, tiny_model, tiny_rdpm_tokenizer
from unimodal.config import ConfigError
from unimodal.data.shapes import ShapesDataset
from unimodal.metrics.generator_diagnostics import (heldout_scenes, oracle_prefix_accuracy,
                                                    teacher_forced_steps)
from unimodal.metrics.shapes_checker import (ShapesAccuracy, score_image, score_reconstructions,
                                             spec_for_key, spec_from_objects)
from unimodal.model.export import save_unified
from unimodal.model.sampling import ImageSamplingConfig, guide
from unimodal.model.objectives.rdpm import RDPMBlockInput
from unimodal.model.unified import UnifiedModelConfig
from unimodal.tokenizer.rdpm_quantizer import RDPMQuantizer, rdpm_schedule
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig, save_tokenizer


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


@pytest.fixture(scope="module")
def latent_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latent_head")
    _, tok_dir, tok, vocab, vocab_cfg = make_assets(folder)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, "latent", hidden_size=64, num_layers=2,
                       num_heads=4, num_kv_heads=2, intermediate_size=128).eval()
    save_unified(model, tok, folder / "export")
    return model, tok, folder


def test_oracle_prefix_of_all_steps_is_the_reconstruction(latent_model):
    model, tok, _ = latent_model
    images, scenes = heldout_scenes(6, 32)
    seeds = list(range(6))
    sampling = ImageSamplingConfig(cfg_scale=2.0, temperature=1.0)
    result = oracle_prefix_accuracy(model, tok, images, scenes, seeds, [0, 4], sampling,
                                    batch_size=4)
    expected = ShapesAccuracy()
    with torch.no_grad():
        recon = tok.decode(tok.encode(images, seeds)).clamp(-1, 1)
    for image, scene in zip(recon, scenes):
        spec = spec_from_objects(scene.objects)
        expected.update(score_image(image, spec), spec)
    assert result[4] == expected.compute()
    assert result[0]["images"] == 6


def test_teacher_forcing_matches_the_training_loss(latent_model):
    """Step-t cross-entropy through the KV-cached sampling path equals the training forward's
    image loss on the same blocks (one caption, one block per step)."""
    from unimodal.data.sequences import pack_documents
    from unimodal.model.objectives.rdpm import image_document
    from unimodal.model.vocabulary import image_prompt

    model, tok, _ = latent_model
    images, scenes = heldout_scenes(1, 32)
    caption, seeds = scenes[0].caption, [3]
    per_step = teacher_forced_steps(model, tok, images, [caption], seeds)
    codes = tok.encode(images, seeds)[0]
    for t in (1, 3):
        doc = image_document(model.vocab, image_prompt(model.vocab, caption), codes, seeds[0], [t],
                             model.tok_cfg.latent_dim, prompt_targets=False)
        with torch.no_grad():
            out = model(pack_documents([doc], seq_len=128))
        assert out["image_loss"].item() == pytest.approx(per_step["loss"][t - 1], rel=1e-4)


def test_generator_diagnostics_script(latent_model, tmp_path):
    _, _, folder = latent_model
    report = load_script("eval/generator_diagnostics.py").main(
        [f"checkpoint={folder / 'export'}", "images=4", "batch_size=2", "prefix_steps=[0,4]",
         f"out={tmp_path}", "device=cpu"])
    saved = json.loads((tmp_path / "generator_diagnostics.json").read_text())
    assert set(saved["per_step"]) == {"true prompt", "shuffled prompt", "no prompt"}
    assert len(saved["per_step"]["true prompt"]["accuracy"]) == 4
    assert set(report["oracle_prefix"]) == {"0", "4"}
    assert (tmp_path / "generator_diagnostics.png").is_file()
    with pytest.raises(ValueError, match="prefix_steps"):
        load_script("eval/generator_diagnostics.py").main(
            [f"checkpoint={folder / 'export'}", "prefix_steps=[9]", "device=cpu"])


def test_recon_script_reports_the_checker_ceiling_and_per_step_table(tmp_path, capsys):
    tok = tiny_tokenizer(image_size=64, channel_mult=[1, 2, 2, 4])
    save_tokenizer(tok, tmp_path / "tok")
    metrics = load_script("eval/recon.py").main(
        [f"tokenizer={tmp_path / 'tok'}", f"out_dir={tmp_path / 'recon'}", "data.source=shapes",
         "data.image_size=64", "data.heldout_samples=8", "max_images=8", "batch_size=4",
         "save_images=false", "device=cpu"])
    assert 0.0 <= metrics["checker_prompt"] <= 1.0 and "checker_prompt_3_objects" in metrics
    report = json.loads((tmp_path / "recon" / "recon_metrics.json").read_text())
    assert len(report["per_step"]["prefix_psnr"]) == 5
    assert (tmp_path / "recon" / "step_diagnostics.png").is_file()
    assert "| prefix_psnr |" in (tmp_path / "recon" / "recon_metrics.md").read_text()
    # save_images=false: no per-image folders, and the closing line does not promise them.
    assert not (tmp_path / "recon" / "original").exists()
    assert "original/" not in capsys.readouterr().out
