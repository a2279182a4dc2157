"""The objective registry with the T = 1 objectives (next_token, masked): a multi-step tokenizer is
refused, the data checks, a loss that falls through the data path, and valid sampled codes."""

import numpy as np
import pytest
import torch

from token_objective_fixtures import LATENT_DIM, model_for, packed_batch, train_losses
from unified_fixtures import host_waits, make_assets
from unimodal.config import ConfigError
from unimodal.data.data_config import DataConfig, SourceConfig
from unimodal.data.mixture import check_against_vocabulary
from unimodal.model.objectives import build_objective
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.vocabulary import image_prompt


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_a_multi_step_tokenizer_is_refused_naming_steps(tmp_path_factory, objective):
    vocab = make_assets(tmp_path_factory.mktemp("assets_t4"))[3]   # T = 4
    with pytest.raises(ConfigError, match=rf"image_objective='{objective}'.*code_maps=4"):
        build_objective(objective, vocab, LATENT_DIM)


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_data_checks_refuse_step_weights_and_ignore_rdpm_blocks(assets, objective):
    vocab = assets[3]
    sources = [SourceConfig(name="c", kind="class_images", shards="x.tar")]
    check_against_vocabulary(DataConfig(sources=sources, seq_len=80, blocks_per_image=2), vocab,
                             LATENT_DIM, image_objective=objective)
    with pytest.raises(ConfigError, match=r"data\.step_weights=\[1\.0\]"):
        check_against_vocabulary(DataConfig(sources=sources, seq_len=80, step_weights=[1.0]),
                                 vocab, LATENT_DIM, image_objective=objective)
    with pytest.raises(ConfigError, match=r"data\.seq_len=40"):
        check_against_vocabulary(DataConfig(sources=sources, seq_len=40), vocab, LATENT_DIM,
                                 image_objective=objective)


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_loss_falls_through_the_data_path(assets, objective):
    vocab = assets[3]
    model = model_for(assets, objective).train()
    losses = train_losses(model, vocab, objective, fresh_layouts=objective == "masked")
    assert losses[0] > 3.5                      # about ln 64 at the start
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_a_training_step_makes_the_host_wait_for_nothing(assets, objective):
    # As for RDPM (tests/model/test_unified.py): no op whose output size or value the host reads.
    model = model_for(assets, objective)
    batch = packed_batch(assets[3], objective)
    assert host_waits(lambda: model(batch)["loss"].backward()) == []


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_sampler_returns_valid_codes(assets, objective):
    vocab = assets[3]
    model = model_for(assets, objective).eval()
    prompts = [image_prompt(vocab, "a red circle"), image_prompt(vocab, class_id=3)]
    cfg = ImageSamplingConfig(cfg_scale=2.0, temperature=1.0, top_k=20, top_p=0.9, seed=4)
    codes = sample_codes(model, prompts, cfg)
    assert codes.shape == (2, 1, *vocab.grid) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < vocab.codebook_size
    with pytest.raises(ValueError, match="prefix"):
        sample_codes(model, prompts, cfg, prefix=codes)

