"""The config of the objectives study (eval/objectives.py): the grid, what is prepared once, the
training base, and the scoring. Everything here is checked before anything heavy runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from unimodal.config import ConfigError
from unimodal.metrics.generation import FEATURE_LAYERS
from unimodal.model.objectives import IMAGE_OBJECTIVES
from unimodal.model.sampling_rules import ImageSamplingConfig


@dataclass
class ModelSize:
    name: str = "s"                       # the size's name in the table and the cell folders
    hidden_size: int = 64                 # W
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 256          # SwiGLU hidden size

    def backbone_overrides(self) -> list[str]:
        return [f"model.backbone.{key}={getattr(self, key)}" for key in
                ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")]


@dataclass
class PrepareConfig:
    """The tokenizers and code shards every cell shares, made once in `dir` (or given there)."""
    dir: str = ""                         # "" = <out>/prepare; another run's folder shares its files
    tokenizer_config: str = "configs/rdpm_tiny.yaml"   # base of both image tokenizers
    tokenizer_overrides: str = ""         # key=value words on top of it, for both
    rdpm_code_maps: int = 10              # T of the rdpm objective's tokenizer
    tokenizer_steps: int = 500            # optimizer steps of each image tokenizer
    image_size: int = 64
    train_images: int = 4000              # shapes scenes encoded for pretraining
    shard_size: int = 1000
    text_corpus: int = 4000               # sentences of the built-in shapes corpus for the text tokenizer
    text_vocab_size: int = 512
    device: str = "auto"                  # tokenizer training and encoding
    parallel: bool = False                # train the two image tokenizers side by side (two child processes)
    encode_workers: int = 0               # loader workers rendering scenes for the encoders (0 = in-process)
    encode_batch_size: int = 64           # images per encoder batch
    # T was `rdpm_steps`, beside tokenizer_steps (optimizer steps); the old key fails naming the new.
    RENAMED: ClassVar[dict[str, str]] = {"rdpm_steps": "rdpm_code_maps"}


@dataclass
class ScoreConfig:
    captions: int = 128                   # held-out caption prompts per cell
    per_class: int = 2                    # class-prompt images per class id per cell
    heldout_offset: int = 1_000_000       # first held-out scene (eval/shapes_score.py's)
    data_seed: int = 0
    classifier: str = "runs/shapes_classifier"   # folder of eval/train_shapes_classifier.py
    reference_images: int = 1000          # held-out renders for the FD reference statistics
    inception_weights: str = ""           # a local Inception .pth enables Inception FID (torch-fidelity)
    inception_feature_layer: str = "2048"  # FID's pool layer; 64/192/768 only for CPU smoke tests
    batch_size: int = 64                  # sampling batch
    timing_batch_sizes: list[int] = field(default_factory=lambda: [1, 64])  # ms/image at these
    timing_repeats: int = 2               # timed batches after one untimed warm-up batch
    device: str = "auto"


@dataclass
class ObjectivesStudyConfig:
    out: str = "runs/objectives"          # run folder: prepare/, cells/, results.md, plots
    objectives: list[str] = field(default_factory=lambda: ["rdpm", "next_token", "masked"])
    sizes: list[ModelSize] = field(default_factory=lambda: [ModelSize()])
    budgets: list[float] = field(default_factory=lambda: [1e12, 4e12])  # training FLOPs per cell
    rdpm_code_head: str = "latent"        # model.code_head of the rdpm cells (the others: shared)
    pretrain_config: str = "configs/uni_tiny.yaml"   # the training base of every cell
    pretrain_overrides: str = ""          # key=value words on top of it, for every cell
    flops_batches: int = 4                # packed batches averaged for the FLOPs of one step
    parallel_cells: int = 1               # cells training and scoring at once (one child process each)
    deadline_minutes: float = 0.0         # 0 = none; else start no cell whose estimate exceeds the time left
    kill_at_minutes: float = 0.0          # 0 = none; else terminate the cells still running then (they re-run)
    cell_minutes_estimate: float = 5.0    # a cell's wall time before one of its objective and size finished
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    sampling: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)

    def validate(self) -> None:
        if not self.objectives:
            raise ConfigError("objectives: empty grid; name at least one of "
                              f"{sorted(IMAGE_OBJECTIVES)}")
        for name in self.objectives:
            if name not in IMAGE_OBJECTIVES:
                raise ConfigError(f"objectives: unknown image objective {name!r}; choose from "
                                  f"{sorted(IMAGE_OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives={self.objectives}: each name once")
        if not self.sizes:
            raise ConfigError("sizes: empty grid; give at least one model size")
        names = [s.name for s in self.sizes]
        if len(set(names)) != len(names) or not all(n and n.replace("_", "").isalnum() for n in names):
            raise ConfigError(f"sizes: names {names} must be distinct, non-empty, letters/digits/_")
        for i, s in enumerate(self.sizes):
            if min(s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.intermediate_size) < 1:
                raise ConfigError(f"sizes[{i}] ({s.name}): every field must be >= 1")
            if s.hidden_size % s.num_heads or s.num_heads % s.num_kv_heads:
                raise ConfigError(f"sizes[{i}] ({s.name}): hidden_size divisible by num_heads, "
                                  "num_heads by num_kv_heads")
        if not self.budgets:
            raise ConfigError("budgets: empty grid; give at least one training FLOPs budget")
        for b in self.budgets:
            if not (math.isfinite(b) and b > 0):
                raise ConfigError(f"budgets: {b} is not a positive finite number of FLOPs")
        if len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"budgets={self.budgets}: each budget once")
        for key in ("pretrain_config", "prepare.tokenizer_config"):
            path = self.pretrain_config if key == "pretrain_config" else self.prepare.tokenizer_config
            if not Path(path).is_file():
                raise ConfigError(f"{key}={path!r}: file not found")
        p, s = self.prepare, self.score
        for key, value in (("prepare.rdpm_code_maps", p.rdpm_code_maps), ("prepare.tokenizer_steps", p.tokenizer_steps),
                           ("prepare.train_images", p.train_images), ("prepare.shard_size", p.shard_size),
                           ("prepare.text_corpus", p.text_corpus), ("flops_batches", self.flops_batches),
                           ("prepare.encode_batch_size", p.encode_batch_size),
                           ("score.batch_size", s.batch_size), ("score.timing_repeats", s.timing_repeats)):
            if value < 1:
                raise ConfigError(f"{key}={value}: must be >= 1")
        if p.encode_workers < 0:
            raise ConfigError(f"prepare.encode_workers={p.encode_workers}: must be >= 0 (0 = in-process)")
        if self.parallel_cells < 1:
            raise ConfigError(f"parallel_cells={self.parallel_cells}: must be >= 1 (1 = one cell at a time)")
        for key in ("deadline_minutes", "kill_at_minutes", "cell_minutes_estimate"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key}={value}: must be a finite number >= 0")
        if 0 < self.kill_at_minutes < self.deadline_minutes:
            raise ConfigError(f"kill_at_minutes={self.kill_at_minutes}: before deadline_minutes="
                              f"{self.deadline_minutes}; give 0 or a later time")
        if p.rdpm_code_maps < 2 and "rdpm" in self.objectives:
            raise ConfigError(f"prepare.rdpm_code_maps={p.rdpm_code_maps}: rdpm needs T >= 2 "
                              "(T = 1 is the token objectives' plain VQ)")
        if s.captions < 0 or s.per_class < 0 or s.captions + s.per_class == 0:
            raise ConfigError(f"score.captions={s.captions}, score.per_class={s.per_class}: each "
                              ">= 0, not both 0")
        if s.captions + 28 * s.per_class < 2 or s.reference_images < 2:
            raise ConfigError("score: the Fréchet distance needs >= 2 generated images and "
                              "score.reference_images >= 2")
        if not s.timing_batch_sizes or min(s.timing_batch_sizes) < 1:
            raise ConfigError(f"score.timing_batch_sizes={s.timing_batch_sizes}: sizes >= 1")
        if not (Path(s.classifier) / "weights.safetensors").is_file():
            raise ConfigError(f"score.classifier={s.classifier!r}: no shapes classifier there "
                              "(train one once: python eval/train_shapes_classifier.py out=...)")
        if s.inception_weights and not Path(s.inception_weights).is_file():
            raise ConfigError(f"score.inception_weights={s.inception_weights!r}: file not found")
        if s.inception_feature_layer not in FEATURE_LAYERS:
            raise ConfigError(f"score.inception_feature_layer={s.inception_feature_layer!r}: one "
                              f"of {list(FEATURE_LAYERS)} (2048 = FID)")
        self.sampling.validate("sampling")

    def prepare_dir(self) -> Path:
        return Path(self.prepare.dir) if self.prepare.dir else Path(self.out) / "prepare"
