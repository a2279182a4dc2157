"""The pretraining config: model, data, optimizer, loop, and a `deepspeed:` pass-through section.

`deepspeed_config()` merges our defaults (ZeRO stage 2, bf16, gradient clipping 1.0) under the
user's `deepspeed:` section, then sets the batch keys from ours so the two can never disagree.
Everything is validated before any model is built (`PretrainConfig.validate`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unimodal.config import ConfigError, check_optimizer
from unimodal.data.mixture import DataConfig
from unimodal.model.float8 import require_fp8
from unimodal.model.unified import UnifiedModelConfig

DEEPSPEED_DEFAULTS: dict[str, Any] = {
    "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True},
    "bf16": {"enabled": True},
    "gradient_clipping": 1.0,
    "steps_per_print": 10**9,          # we log ourselves
    "wall_clock_breakdown": False,
}


@dataclass
class OptimizerConfig:
    lr: float = 4e-4
    min_lr_ratio: float = 0.1             # cosine decays to lr * min_lr_ratio
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.03            # not on norms, biases, embeddings
    warmup_steps: int = 1000
    eps: float = 1e-8
    fused: bool = False                   # torch's fused AdamW kernel (one launch for all
                                          # parameters); same update up to rounding

    def validate(self, prefix: str = "optim") -> None:
        check_optimizer(self, prefix)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"{prefix}.min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")
        if self.eps <= 0:
            raise ConfigError(f"{prefix}.eps={self.eps}: must be > 0")


@dataclass
class LoopConfig:
    out_dir: str = "runs/pretrain"
    steps: int = 1000                     # optimizer steps
    gradient_accumulation: int = 1
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    ema_decay: float = 0.9999             # 0 = no EMA
    seed: int = 0
    activation_checkpointing: bool = False
    compile: bool = False                 # torch.compile each decoder layer
    max_nonfinite_steps: int = 5          # this many non-finite losses in a row stop the run
    peak_tflops: float = 989.0            # per device, for MFU (H100/H200 dense bf16)
    tensorboard: bool = True
    stop_after: int = 0                   # testing aid: exit (like a crash) after this step; 0 = off
    overwrite: bool = False               # a fresh run may replace another run's files in out_dir
    export_every: int = 0                 # also export <out_dir>/exports/step_X every N steps (curves)


@dataclass
class PretrainConfig:
    """One pretraining run (train/pretrain.py): the unified model, its data mixture, AdamW with
    warm-up + cosine, the loop, and DeepSpeed's own keys (merged by `deepspeed_config`)."""

    model: UnifiedModelConfig = field(default_factory=UnifiedModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    deepspeed: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        m = self.model
        if not m.image_tokenizer:
            raise ConfigError("model.image_tokenizer: required, the folder written by "
                              "tokenizers/train_rdpm.py (<out_dir>/tokenizer)")
        if not (Path(m.image_tokenizer) / "tokenizer.safetensors").is_file():
            raise ConfigError(f"model.image_tokenizer={m.image_tokenizer!r}: no tokenizer there")
        if m.backbone.base_model and not (Path(m.backbone.base_model) / "config.json").is_file():
            raise ConfigError(f"model.backbone.base_model={m.backbone.base_model!r}: not a local "
                              "Hugging Face checkpoint folder (no config.json)")
        m.validate("model")
        require_fp8(m.fp8, "model.fp8")  # the model config alone does not need torchao
        m.resolve_image_geometry("model")
        m.backbone.validate("model.backbone")
        m.vocab.validate("model.vocab")
        self.data.validate("data")
        stage = self.deepspeed_config(1)["zero_optimization"].get("stage", 0)
        if stage not in (0, 1, 2, 3):
            raise ConfigError(f"deepspeed.zero_optimization.stage={stage}: choose 0, 1, 2 or 3")
        if stage == 3 and self.train.ema_decay > 0:
            raise ConfigError("train.ema_decay > 0 needs ZeRO stage 0-2 (every rank then holds the "
                              "full weights); set train.ema_decay=0 with stage 3")
        self.optim.validate("optim")
        for key in ("steps", "gradient_accumulation", "log_every", "checkpoint_every"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1")
        for key in ("keep_checkpoints", "max_nonfinite_steps", "export_every"):
            if getattr(self.train, key) < 0:
                raise ConfigError(f"train.{key}={getattr(self.train, key)}: must be >= 0")
        if not 0 <= self.train.ema_decay < 1:
            raise ConfigError("train.ema_decay must be in [0, 1)")

    def deepspeed_config(self, world_size: int) -> dict[str, Any]:
        merged = copy.deepcopy(DEEPSPEED_DEFAULTS)
        for key, value in self.deepspeed.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        for key in ("optimizer", "scheduler"):
            if key in merged:
                raise ConfigError(f"deepspeed.{key}: set the optimizer and schedule in optim: "
                                  "(a torch AdamW and our warmup+cosine are passed to DeepSpeed)")
        micro = self.data.rows_per_batch
        merged["train_micro_batch_size_per_gpu"] = micro
        merged["gradient_accumulation_steps"] = self.train.gradient_accumulation
        merged["train_batch_size"] = micro * self.train.gradient_accumulation * world_size
        return merged
