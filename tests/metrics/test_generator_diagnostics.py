"""Generator diagnostics (unimodal/metrics/generator_diagnostics.py) on a tiny latent-head model:
the held-out scenes are the rendered shapes, teacher forcing equals the training loss step by step,
the oracle prefix of every step is the tokenizer's reconstruction, and eval/generator_diagnostics.py
writes its report."""

import json

import numpy as np
import pytest
import torch

from unified_fixtures import load_script, make_assets, tiny_model
from unimodal.data.sequences import pack_documents
from unimodal.data.shapes import render_sample
from unimodal.metrics.generator_diagnostics import (HELDOUT_OFFSET, heldout_scenes,
                                                    oracle_prefix_accuracy, teacher_forced_steps)
from unimodal.metrics.shapes_checker import ShapesAccuracy, score_image, spec_from_objects
from unimodal.model.export import save_unified
from unimodal.model.objectives.rdpm import image_document
from unimodal.model.sampling import ImageSamplingConfig
from unimodal.model.vocabulary import image_prompt


def test_heldout_scenes_are_the_rendered_samples_in_unit_range():
    images, scenes = heldout_scenes(3, 32, seed=2, offset=7)
    assert images.shape == (3, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    for i, scene in enumerate(scenes):
        expected = render_sample(7 + i, 2, 32)
        assert scene.caption == expected.caption
        pixels = ((images[i] + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
        assert np.array_equal(pixels, expected.image)
    assert heldout_scenes(1, 32)[1][0].caption == render_sample(HELDOUT_OFFSET, 0, 32).caption


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
