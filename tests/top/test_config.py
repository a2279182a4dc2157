"""Config loading: defaults < size preset < YAML < command line, with errors naming key and file."""

import pytest

from unimodal.config import ConfigError, load_config
from unimodal.tokenizer.training import TokenizerTrainConfig


def test_yaml_and_overrides_layer(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  size: paper_f16\n  code_maps: 4\ntrain:\n  steps: 7\n")
    cfg = load_config(TokenizerTrainConfig, path, ["train.steps=9", "data.image_size=256"])
    assert cfg.model.codebook_size == 4096 and cfg.model.image_size == 256  # from the preset
    assert cfg.model.code_maps == 4                                          # file over preset
    assert cfg.train.steps == 9                                              # command line last
    assert cfg.model.grid == (16, 16)


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  widht: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.widht"):
        load_config(TokenizerTrainConfig, path)


def test_wrong_type_names_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: many\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.steps"):
        load_config(TokenizerTrainConfig, path)
    with pytest.raises(ConfigError, match=r"command line.*train\.batch_size"):
        load_config(TokenizerTrainConfig, None, ["train.batch_size=big"])


def test_unknown_size_and_semantic_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.size='huge'"):
        load_config(TokenizerTrainConfig, None, ["model.size=huge"])
    with pytest.raises(ConfigError, match=r"model\.schedule"):
        load_config(TokenizerTrainConfig, None, ["model.schedule=cosine"])
    with pytest.raises(ConfigError, match=r"data\.image_size=32 differs"):
        load_config(TokenizerTrainConfig, None, ["data.image_size=32"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(TokenizerTrainConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"loss\.perceptual_weights_path"):
        load_config(TokenizerTrainConfig, None, ["loss.perceptual_weights_path=/nope.pth"])
