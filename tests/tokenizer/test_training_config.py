"""The tokenizer training config (unimodal/tokenizer/training_config.py): the shipped tiny config
and the defaults validate; each value that cannot work is refused with a ConfigError naming its
key, before any model is built."""

from pathlib import Path

import pytest

from unimodal.config import ConfigError, load_config
from unimodal.tokenizer.training_config import (OptimConfig, TokenizerRunConfig,
                                                TokenizerTrainConfig)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs/rdpm_tiny.yaml"


def test_the_defaults_and_the_tiny_config_validate():
    TokenizerTrainConfig().validate()
    cfg = load_config(TokenizerTrainConfig, TINY)
    assert isinstance(cfg.optim, OptimConfig) and isinstance(cfg.train, TokenizerRunConfig)
    assert cfg.data.image_size == cfg.model.image_size
    defaults = TokenizerTrainConfig()
    assert defaults.optim.betas == [0.5, 0.9] and defaults.optim.schedule == "constant"
    assert defaults.optim.betas is not TokenizerTrainConfig().optim.betas     # no shared default list


@pytest.mark.parametrize("override, key", [
    ("optim.lr=0", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("optim.warmup_steps=-5", "optim.warmup_steps"),
    ("optim.betas=[0.5,1.5]", "optim.betas"), ("optim.grad_clip=-1", "optim.grad_clip"),
    ("optim.weight_decay=-0.01", "optim.weight_decay"), ("optim.schedule=linear", "optim.schedule"),
    ("optim.min_lr_ratio=1.5", "optim.min_lr_ratio"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints"), ("train.max_minutes=-1", "train.max_minutes"),
    ("train.diagnostics_every=-1", "train.diagnostics_every"), ("model.noise_scale=2", "model.noise_scale"),
    ("model.latent_gain_init=0", "model.latent_gain_init"),
    ("train.train_only=encoder", "train.train_only"), ("train.train_only=decoder", "train.init_from"),
])
def test_tokenizer_values_that_cannot_work_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TokenizerTrainConfig, TINY, [override])


@pytest.mark.parametrize("section, key, value, match", [
    ("optim", "min_lr_ratio", -0.1, r"optim\.min_lr_ratio=-0\.1: must be in \[0, 1\]"),
    ("optim", "schedule", "step", r"optim\.schedule='step': choose constant or cosine"),
    ("train", "max_nonfinite_steps", 0, r"train\.max_nonfinite_steps=0: must be >= 1"),
    ("train", "precision", "fp16", r"train\.precision='fp16': choose fp32 or bf16"),
    ("train", "steps", 0, r"train\.steps must be >= 1"),
    ("train", "batch_size", 0, r"train\.batch_size must be >= 1"),
    ("train", "log_every", 0, r"train\.log_every must be >= 1"),
    ("train", "checkpoint_every", 0, r"train\.checkpoint_every must be >= 1"),
    ("train", "diagnostics_images", -1, r"train\.diagnostics_images must be >= 0"),
    ("data", "image_size", 64, r"data\.image_size=64 differs from model\.image_size=32"),
    ("data", "source", "imagenet", r"data\.source='imagenet': must be one of"),  # data's own check
])
def test_each_check_names_its_key(section, key, value, match):
    cfg = TokenizerTrainConfig()
    cfg.model.image_size = cfg.data.image_size = 32
    cfg.validate()
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_bounds_are_inclusive():
    cfg = TokenizerTrainConfig()
    cfg.optim.min_lr_ratio, cfg.train.keep_checkpoints, cfg.train.max_minutes = 1.0, 0, 0.0
    cfg.train.diagnostics_every = cfg.train.diagnostics_images = 0
    cfg.train.train_only, cfg.train.init_from = "decoder", "runs/x/tokenizer"
    cfg.optim.schedule, cfg.train.precision = "cosine", "bf16"
    cfg.validate()
