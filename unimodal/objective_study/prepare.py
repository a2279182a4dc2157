"""What every cell of the study shares, made once per grid in the prepare folder (skipped where
already there, so a rerun or another run pointing `prepare.dir` here reuses it):

    text.model        sentencepiece model on the built-in shapes corpus (tokenizers/train_text.py)
    rdpm/tokenizer    RDPM image tokenizer, T = prepare.rdpm_code_maps (the rdpm cells)
    vq/tokenizer      plain VQ, T = 1, the same architecture and codebook size K (next_token, masked)
    rdpm/codes, vq/codes   the same shapes scenes encoded by each (tokenizers/encode.py's encoder)

Each piece is written through its own tool (the tokenizer trainer, the shard encoder, the text
script), and a piece counts as done only when its final file exists. With `prepare.parallel` the
two image tokenizers train at once, each in its own tokenizers/train_rdpm.py process (the same
config and words; output in <prepare>/<kind>_tokenizer.log); the encoding follows, one by one.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from unimodal.config import load_config
from unimodal.data.image_sources import ImageDataConfig
from unimodal.objective_study.child_process import (child_env, log_tail, sigterm_as_exit,
                                                    start_logged, stop)
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
    kinds = tokenizer_kinds(cfg)
    missing = {kind: code_maps for kind, code_maps in kinds.items()
               if not (root / kind / "tokenizer" / "tokenizer.safetensors").is_file()}
    for kind, code_maps in missing.items():
        log(f"prepare: {kind} image tokenizer (T = {code_maps}, {p.tokenizer_steps} steps) -> "
            f"{root / kind / 'tokenizer'}")
    if p.parallel and len(missing) > 1:
        train_side_by_side(cfg, missing, scripts_root, log)
    else:
        for kind, code_maps in missing.items():
            train_tokenizer(load_config(TokenizerTrainConfig, p.tokenizer_config,
                                        tokenizer_words(cfg, kind, code_maps)))
    tokenizers, shards = {}, {}
    for kind in kinds:
        tokenizer, codes = root / kind / "tokenizer", root / kind / "codes"
        if not (codes / shard_name(last_shard(p.train_images, p.shard_size))).is_file():
            log(f"prepare: encoding {p.train_images} shapes scenes with the {kind} tokenizer -> {codes}")
            data = ImageDataConfig(source="shapes", image_size=p.image_size,
                                   num_samples=p.train_images, num_workers=p.encode_workers)
            ShardEncoder(EncodeConfig(tokenizer=str(tokenizer), out_dir=str(codes), data=data,
                                      shard_size=p.shard_size, batch_size=p.encode_batch_size,
                                      device=p.device,
                                      precision="fp32", overwrite=True)).run()
        tokenizers[kind] = tokenizer
        shards[kind] = shard_pattern(codes, p.train_images, p.shard_size)
    return Prepared(text_model, tokenizers, shards)


def tokenizer_words(cfg: ObjectivesStudyConfig, kind: str, code_maps: int) -> list[str]:
    """key=value words of one image tokenizer's training, on top of prepare.tokenizer_config."""
    p = cfg.prepare
    return shlex.split(p.tokenizer_overrides) + [
        f"model.code_maps={code_maps}", f"train.steps={p.tokenizer_steps}",
        f"train.out_dir={cfg.prepare_dir() / kind}", f"data.image_size={p.image_size}",
        f"train.device={p.device}", "train.overwrite=true"]


def train_side_by_side(cfg: ObjectivesStudyConfig, missing: dict[str, int], scripts_root: Path,
                       log=print) -> None:
    """prepare.parallel: each tokenizer in its own tokenizers/train_rdpm.py process, at once (the
    same config and words as in-process training); output to <prepare>/<kind>_tokenizer.log."""
    root, start = cfg.prepare_dir(), time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // len(missing))
    procs = {kind: start_logged([sys.executable, str(scripts_root / "tokenizers/train_rdpm.py"),
                                 "--config", cfg.prepare.tokenizer_config,
                                 *tokenizer_words(cfg, kind, code_maps)],
                                root / f"{kind}_tokenizer.log", child_env(scripts_root, threads))
             for kind, code_maps in missing.items()}
    with sigterm_as_exit():
        try:
            codes = {kind: proc.wait() for kind, proc in procs.items()}
        finally:
            for proc in procs.values():
                stop(proc)
    failed = [kind for kind, code in codes.items() if code != 0]
    if failed:
        raise RuntimeError("prepare: image tokenizer training failed: " + "\n\n".join(
            f"{kind} ({root / f'{kind}_tokenizer.log'}):\n{log_tail(root / f'{kind}_tokenizer.log')}"
            for kind in failed))
    log(f"prepare: {', '.join(missing)} image tokenizers trained side by side in "
        f"{time.perf_counter() - start:.0f} s")
