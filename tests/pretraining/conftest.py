"""Shared by the trainer tests: a tiny pretraining config (text, caption and class images)."""

from pathlib import Path

import pytest

from mixture_fixtures import code_shards, text_shards
from unified_fixtures import make_assets, write_pretrain_config


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    text_model, tok_dir, _, vocab, _ = make_assets(folder)
    text = text_shards(folder / "text", "text", 2, 40, vocab)
    t2i = code_shards(folder / "t2i", "t2i", 2, 20, "caption_images")
    c2i = code_shards(folder / "c2i", "c2i", 1, 20, "class_images")
    return write_pretrain_config(
        folder / "uni_test.yaml", text_model, tok_dir,
        [("text", "text", text, 0.4), ("t2i", "caption_images", t2i, 0.4),
         ("c2i", "class_images", c2i, 0.2)],
        model={"vocab": {"codebook_size": 64, "code_maps": 4, "grid": [8, 8]}},
        data={"blocks_per_image": 2}, optim={"lr": 3.0e-3, "warmup_steps": 2},
        train={"steps": 6, "log_every": 1, "checkpoint_every": 3, "ema_decay": 0.9,
               "tensorboard": True},
        deepspeed={"zero_optimization": {"stage": 2}})
