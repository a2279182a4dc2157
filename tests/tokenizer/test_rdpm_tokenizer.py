"""The tokenizer model: code round trips, checkpoint round trips, clear errors (the losses are in
test_losses.py, the encoder and decoder in test_autoencoder.py)."""

import pytest
import torch

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.config import ConfigError, load_config
from unimodal.tokenizer.rdpm_tokenizer import (CONFIG_FILE, RDPMTokenizerConfig,
                                               load_tokenizer, load_tokenizer_config, save_tokenizer)
from unimodal.tokenizer.training_config import TokenizerTrainConfig


@pytest.fixture
def model():
    return tiny_rdpm_tokenizer(code_maps=5)


def test_decode_of_codes_equals_decoder_on_latent(model):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        recon, q = model(images, seeds=[1, 2, 3])
    codes = model.encode(images, [1, 2, 3])
    assert codes.shape == (3, 5, 8, 8) and torch.equal(codes, q.codes)
    torch.testing.assert_close(model.decode(codes), model.decoder(q.latent))
    torch.testing.assert_close(model.decode(codes), recon)


def test_save_load_round_trip(model, tmp_path):
    save_tokenizer(model, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(images, [4, 5]), model.encode(images, [4, 5]))
    with pytest.raises(FileNotFoundError, match="tokenizer.safetensors"):
        load_tokenizer(tmp_path)


def test_a_folder_saved_before_the_code_maps_rename_still_loads(model, tmp_path):
    """tokenizer.yaml files written before the rename name T `steps`; exports are user files."""
    save_tokenizer(model, tmp_path / "tok")
    config = tmp_path / "tok" / CONFIG_FILE
    assert "code_maps: 5" in config.read_text()
    config.write_text(config.read_text().replace("code_maps: 5", "steps: 5"))
    assert load_tokenizer_config(tmp_path / "tok").code_maps == 5
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(images, [4, 5]), model.encode(images, [4, 5]))


def test_the_old_key_steps_fails_naming_code_maps(tmp_path):
    # model.steps sat beside train.steps (optimizer steps); a user's config must say which.
    with pytest.raises(ConfigError, match=r"command line: model\.steps was renamed to model\.code_maps"):
        load_config(TokenizerTrainConfig, None, ["model.steps=10"])
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  steps: 10\ntrain:\n  steps: 50\n")
    with pytest.raises(ConfigError, match=r"old\.yaml: model\.steps was renamed to model\.code_maps"):
        load_config(TokenizerTrainConfig, old)
    cfg = load_config(TokenizerTrainConfig, None, ["model.code_maps=1", "train.steps=50"])
    assert (cfg.model.code_maps, cfg.train.steps) == (1, 50)


def test_wrong_images_are_clear_errors(model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*image_size=32"):
        model.encode(torch.rand(1, 1, 32, 32), [0])
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode(torch.rand(1, 3, 64, 64), [0])
    with pytest.raises(ValueError, match="codes must be"):
        model.decode(torch.zeros(1, 5, 4, 4, dtype=torch.long))


def test_paper_preset_shapes():
    cfg = RDPMTokenizerConfig.from_size("paper_f16")
    assert (cfg.image_size, cfg.downsample, cfg.grid) == (256, 16, (16, 16))
    assert (cfg.codebook_size, cfg.latent_dim, cfg.code_maps, cfg.schedule) == (4096, 32, 10, "pow")
