"""Shared by the trainer tests: a tiny pretraining config (text, caption and class images)."""

from pathlib import Path

import pytest

from mixture_fixtures import code_shards, text_shards
from unified_fixtures import make_assets


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    text_model, tok_dir, _, vocab, _ = make_assets(folder)
    text = text_shards(folder / "text", "text", 2, 40, vocab)
    t2i = code_shards(folder / "t2i", "t2i", 2, 20, "caption_images")
    c2i = code_shards(folder / "c2i", "c2i", 1, 20, "class_images")
    path = folder / "uni_test.yaml"
    path.write_text(f"""
model:
  backbone: {{size: tiny}}
  vocab: {{text_tokenizer: {text_model}, num_classes: 28, codebook_size: 64, code_maps: 4, grid: [8, 8]}}
  image_tokenizer: {tok_dir}
data:
  sources:
    - {{name: text, kind: text, shards: "{text}", weight: 0.4}}
    - {{name: t2i, kind: caption_images, shards: "{t2i}", weight: 0.4}}
    - {{name: c2i, kind: class_images, shards: "{c2i}", weight: 0.2}}
  seq_len: 256
  rows_per_batch: 2
  blocks_per_image: 2
  num_workers: 0
optim: {{lr: 3.0e-3, warmup_steps: 2}}
train:
  steps: 6
  log_every: 1
  checkpoint_every: 3
  ema_decay: 0.9
  tensorboard: true
deepspeed:
  bf16: {{enabled: false}}
  zero_optimization: {{stage: 2}}
""")
    return path
