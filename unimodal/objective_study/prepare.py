"""What every cell of the study shares, made once per grid in the prepare folder (skipped where
already there, so a rerun or another run pointing `prepare.dir` here reuses it):

    text.model        sentencepiece model on the built-in shapes corpus (tokenizers/train_text.py)
    rdpm/tokenizer    RDPM image tokenizer, T = prepare.rdpm_code_maps (the rdpm cells)
    vq/tokenizer      plain VQ, T = 1, the same architecture and codebook size K (next_token, masked)
    rdpm/codes, vq/codes   the same shapes scenes encoded by each (tokenizers/encode.py's encoder)

Each piece is written through its own tool (the tokenizer trainer, the shard encoder, the text
script), and a piece counts as done only when its final file exists.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from unimodal.config import load_config
from unimodal.data.image_sources import ImageDataConfig
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.tokenizer.encode_shards import EncodeConfig, ShardEncoder, shard_name
from unimodal.tokenizer.training import TokenizerTrainConfig, train_tokenizer


@dataclass
class Prepared:
    text_tokenizer: Path
    tokenizers: dict[str, Path]           # "rdpm" | "vq" -> tokenizer folder
    shards: dict[str, str]                # "rdpm" | "vq" -> shard pattern

    def for_objective(self, objective: str) -> tuple[Path, str]:
        kind = "rdpm" if objective == "rdpm" else "vq"
        return self.tokenizers[kind], self.shards[kind]


def tokenizer_kinds(cfg: ObjectivesStudyConfig) -> dict[str, int]:
    """The tokenizers the grid needs and their T."""
    kinds = {}
    if "rdpm" in cfg.objectives:
        kinds["rdpm"] = cfg.prepare.rdpm_code_maps
    if any(name != "rdpm" for name in cfg.objectives):
        kinds["vq"] = 1
    return kinds


def last_shard(images: int, shard_size: int) -> int:
    return (images + shard_size - 1) // shard_size - 1


def shard_pattern(folder: Path, images: int, shard_size: int) -> str:
    return str(folder / f"shard-{{000000..{last_shard(images, shard_size):06d}}}.tar")


def prepare(cfg: ObjectivesStudyConfig, scripts_root: Path, log=print) -> Prepared:
    p, root = cfg.prepare, cfg.prepare_dir()
    root.mkdir(parents=True, exist_ok=True)
    text_model = root / "text.model"
    if not text_model.is_file():
        log(f"prepare: text tokenizer -> {text_model}")
        subprocess.run([sys.executable, str(scripts_root / "tokenizers/train_text.py"),
                        f"shapes_corpus={p.text_corpus}", f"out={text_model}",
                        f"vocab_size={p.text_vocab_size}"], check=True, stdout=subprocess.DEVNULL)
    tokenizers, shards = {}, {}
    for kind, code_maps in tokenizer_kinds(cfg).items():
        run_dir = root / kind
        tokenizer = run_dir / "tokenizer"
        if not (tokenizer / "tokenizer.safetensors").is_file():
            log(f"prepare: {kind} image tokenizer (T = {code_maps}, {p.tokenizer_steps} steps) -> {tokenizer}")
            words = shlex.split(p.tokenizer_overrides) + [
                f"model.code_maps={code_maps}", f"train.steps={p.tokenizer_steps}",
                f"train.out_dir={run_dir}", f"data.image_size={p.image_size}",
                f"train.device={p.device}", "train.overwrite=true"]
            train_tokenizer(load_config(TokenizerTrainConfig, p.tokenizer_config, words))
        codes = run_dir / "codes"
        if not (codes / shard_name(last_shard(p.train_images, p.shard_size))).is_file():
            log(f"prepare: encoding {p.train_images} shapes scenes with the {kind} tokenizer -> {codes}")
            data = ImageDataConfig(source="shapes", image_size=p.image_size,
                                   num_samples=p.train_images, num_workers=0)
            ShardEncoder(EncodeConfig(tokenizer=str(tokenizer), out_dir=str(codes), data=data,
                                      shard_size=p.shard_size, device=p.device,
                                      precision="fp32", overwrite=True)).run()
        tokenizers[kind] = tokenizer
        shards[kind] = shard_pattern(codes, p.train_images, p.shard_size)
    return Prepared(text_model, tokenizers, shards)
