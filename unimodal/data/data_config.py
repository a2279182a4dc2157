"""The data section of a pretraining config: weighted sources and packing, validated by key
(the checks that need the vocabulary are `mixture.check_against_vocabulary`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from unimodal.config import ConfigError
from unimodal.data.image_sources import expand_urls
from unimodal.data.sample_documents import KINDS


@dataclass
class SourceConfig:
    name: str = ""
    kind: str = "text"          # text | class_images | caption_images | caption_audio | caption_video
    shards: str = ""            # brace pattern(s), comma-separated allowed
    weight: float = 1.0         # share of samples: weight / sum of weights
    jsonl_field: str = "text"   # text field of `json` entries in text shards

    def validate(self, prefix: str) -> None:
        if not self.name:
            raise ConfigError(f"{prefix}.name: required (used in logs and the loader state)")
        if self.kind not in KINDS:
            raise ConfigError(f"{prefix}.kind={self.kind!r}: choose one of {KINDS}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"{prefix}.weight={self.weight}: must be a finite number > 0")
        if not self.shards.strip():
            raise ConfigError(f"{prefix}.shards: required, shard paths or brace patterns")
        shards = expand_urls(self.shards)
        local = [s for s in shards if "://" not in s and not s.startswith("pipe:")]
        missing = [s for s in local if not Path(s).is_file()]
        if not shards or missing:
            raise ConfigError(f"{prefix}.shards={self.shards!r}: {len(missing)} of {len(shards)} "
                              f"shard files not found, e.g. {missing[:3]}")


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    seq_len: int = 4096                # tokens per packed row
    rows_per_batch: int = 1            # packed rows per micro-batch per rank
    blocks_per_image: int = 2          # k distinct steps per image, 1..T
    # Which steps the k blocks train: [] = uniform; else T weights >= 0 (at least k > 0), steps
    # drawn without replacement with probability proportional to the weights of those left.
    step_weights: list[float] = field(default_factory=list)
    cfg_drop: float = 0.1              # probability that an image prompt becomes <null>
    caption_loss: bool = True          # caption tokens are text targets
    num_workers: int = 2               # DataLoader workers per rank (0 = in the training process)
    seed: int = 0
    max_bad_fraction: float = 0.01     # per source and reader
    bad_check_after: int = 200         # samples a reader sees of a source before judging it

    def validate(self, prefix: str = "data") -> None:
        if not self.sources:
            raise ConfigError(f"{prefix}.sources: empty; give at least one source "
                              "(name, kind, shards, weight)")
        names = set()
        for i, source in enumerate(self.sources):
            source.validate(f"{prefix}.sources[{i}]")
            if source.name in names:
                raise ConfigError(f"{prefix}.sources[{i}].name={source.name!r}: used twice")
            names.add(source.name)
        for key, low in (("seq_len", 2), ("rows_per_batch", 1), ("blocks_per_image", 1),
                         ("num_workers", 0), ("seed", 0), ("bad_check_after", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)}: must be >= {low}")
        for key in ("cfg_drop", "max_bad_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)}: must be in [0, 1]")
        weights = list(self.step_weights)
        if weights:
            if not all(math.isfinite(w) and w >= 0 for w in weights):
                raise ConfigError(f"{prefix}.step_weights={weights}: each must be a finite "
                                  "number >= 0")
            if sum(w > 0 for w in weights) < self.blocks_per_image:
                raise ConfigError(f"{prefix}.step_weights={weights}: needs at least "
                                  f"{prefix}.blocks_per_image={self.blocks_per_image} positive "
                                  "entries (k distinct steps per image)")
