"""Sampling for the evaluation scripts: indexed image jobs written as PNGs, sharded and resumable.

Every image an evaluation needs is a job (global index i, request, file). Image i uses noise seed
`seed + i` (`sample_codes` with explicit seeds), so an image does not depend on its batch, its
GPU or how often the run was restarted.

Design choices, one line each:
- Sharding: rank r of W takes the jobs with i % W == r, from torchrun's environment or an explicit
  `shard=r/W` (separate jobs on several nodes, no process group needed).
- Resume: a job whose file exists is skipped; files are written to a hidden temporary name and
  renamed, so a killed run never leaves a half-written PNG that would count as done.
- `sampling.json` in the output folder records the settings (CFG scale/schedule, tau, top-k, base
  seed, T, checkpoint sha256); a rerun with other settings in the same folder is refused, so one
  folder never mixes two samplers.
- The checkpoint hash is sha256 over every *.safetensors file in the folder (relative path and
  bytes, sorted by path): the weights, not the folder name, identify the model.
- PNGs are encoded in a small thread pool (zlib releases the GIL) while the GPU samples on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unimodal.distributed import init_from_env, pick_device, rank, world_size
from unimodal.images import tensor_to_pil
from unimodal.model.float8 import check_keep_bf16, require_fp8
from unimodal.model.sampling import (ImageRequest, ImageSamplingConfig, check_batch_size,
                                     max_prompt_tokens, sample_and_decode, validate_requests)

SETTINGS_FILE = "sampling.json"


@dataclass
class SamplingRunConfig:
    """What every script that samples images from a checkpoint takes (the scripts' configs extend it)."""
    checkpoint: str = ""                  # consolidated unified-model folder
    image_decoder: str = ""               # a tokenizer folder whose decoder replaces the checkpoint's
                                          # (a decoder fine-tuned on the same codes; checked)
    sampling: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)
    batch_size: int = 32                  # images per sampling batch
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    compile: bool = False                 # torch.compile backbone and decoder (CUDA)
    cuda_graphs: bool = False             # with compile: each image block pass replays one CUDA graph
    overlap_decode: bool = False          # CUDA: decode batch i on a side stream while batch i+1 samples
    fp8: str = ""                         # with compile: decoder-layer matmuls in FP8, tensorwise |
                                          # rowwise (torchao; H100/H200); other codes than bf16's
    fp8_keep_bf16: list[str] = field(default_factory=list)  # with fp8: projections left in bf16;
                                          # [down_proj] was fastest for d12 (README, sampling speed)

    def validate(self) -> None:
        self.sampling.validate()
        check_batch_size(self.batch_size)
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs=true needs compile=true (the graphs are torch.compile's)")
        require_fp8(self.fp8, "fp8")
        if self.fp8 and not self.compile:
            raise ValueError(f"fp8={self.fp8} needs compile=true (unfused float8 casts are slower "
                             "than bf16)")
        check_keep_bf16(self.fp8_keep_bf16)
        if self.fp8_keep_bf16 and not self.fp8:
            raise ValueError("fp8_keep_bf16 is set but fp8 is off: set fp8=tensorwise|rowwise")


@dataclass
class ShardedSamplingConfig(SamplingRunConfig):
    """A sampling run split over processes or machines (PNG files, resumable)."""
    shard: str = ""                       # r/W: sample only this shard; "" = torchrun's rank/world size

    def validate(self) -> None:
        super().validate()
        parse_shard(self.shard)


def parse_shard(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        r, w = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard={text!r}: expected r/W, e.g. 0/8") from None
    if not 0 <= r < w:
        raise ValueError(f"shard={text!r}: need 0 <= r < W")
    return r, w


def setup_device_and_shard(cfg: ShardedSamplingConfig) -> tuple[torch.device, int, int, bool]:
    """(device, shard rank, shard count, is_distributed): shard=r/W wins over torchrun's env."""
    device = pick_device(cfg.device)
    shard = parse_shard(cfg.shard)
    if shard is not None:
        return device, shard[0], shard[1], False
    distributed = init_from_env(device)
    return device, rank(), world_size(), distributed


def checkpoint_sha256(folder: str | Path) -> str:
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(folder.rglob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint={folder}: no *.safetensors weights")
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def load_for_sampling(run: SamplingRunConfig, device: torch.device):
    """The checkpoint's model and tokenizer (bf16 on CUDA), with `run.image_decoder`'s decoder."""
    from unimodal.model.export import load_unified
    from unimodal.model.sampling import compile_for_sampling

    if not Path(run.checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint={run.checkpoint}: folder not found")
    model, tokenizer = load_unified(run.checkpoint, device,
                                    torch.bfloat16 if device.type == "cuda" else torch.float32,
                                    image_decoder=run.image_decoder)
    if run.compile:
        compile_for_sampling(model, tokenizer, run.cuda_graphs, channels_last=True,
                             overlap_decode=run.overlap_decode, fp8=run.fp8,
                             fp8_keep_bf16=tuple(run.fp8_keep_bf16))
    return model, tokenizer


def load_modality_for_sampling(run: SamplingRunConfig, modality: str, device: torch.device):
    """The checkpoint's model (bf16 on CUDA) and its copy of `modality`'s tokenizer (audio,
    video), both compiled with `run.compile`. CUDA graphs are refused here: the code-by-code
    sampler writes its static KV cache in place between steps, which a graph would have to copy
    in full at every replay."""
    from unimodal.model.export import load_modality_tokenizer, load_unified
    from unimodal.model.sampling import compile_for_sampling

    if run.cuda_graphs:
        raise ValueError(f"cuda_graphs=true is for images; modality={modality} samples code by "
                         "code (use compile=true)")
    if not Path(run.checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint={run.checkpoint}: folder not found")
    model, _ = load_unified(run.checkpoint, device,
                            torch.bfloat16 if device.type == "cuda" else torch.float32)
    tokenizer = load_modality_tokenizer(run.checkpoint, model.vocab, modality, device)
    if run.compile:
        compile_for_sampling(model, tokenizer)
    return model, tokenizer


def sampling_record(run: SamplingRunConfig, model) -> dict:
    """Everything that decides which images come out, for reports and the resume check."""
    cfg, tok = run.sampling, model.tok_cfg
    # "steps_T" keeps its old name: settings.json of folders sampled before the code_maps rename
    # must still pass the resume check.
    record = {"cfg_scale": cfg.cfg_scale, "cfg_schedule": cfg.cfg_schedule,
              "temperature_tau": cfg.temperature, "top_k": cfg.top_k, "seed": cfg.seed,
              "seeds": f"image i uses noise seed {cfg.seed} + i", "steps_T": tok.code_maps,
              "grid": list(tok.grid), "image_size": tok.image_size,
              "checkpoint": str(run.checkpoint),
              "checkpoint_sha256": checkpoint_sha256(run.checkpoint)}
    if model.objective.name == "masked":   # only its sampler reads these (older records lack them)
        record.update(mask_steps_S=cfg.mask_steps,
                      mask_choice_temperature=cfg.mask_choice_temperature)
    if run.image_decoder:
        record.update(image_decoder=str(run.image_decoder),
                      image_decoder_sha256=checkpoint_sha256(run.image_decoder))
    if cfg.top_p != 1.0:   # recorded when it filters anything, so older records stay valid
        record["top_p"] = cfg.top_p
    return record


def check_resume(out_dir: Path, record: dict) -> bool:
    """True when `out_dir` has no settings yet (then `write_settings`: the record is deterministic,
    so ranks racing to write it write the same bytes); raises when it holds other settings."""
    path = out_dir / SETTINGS_FILE
    if not path.is_file():
        return True
    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {record.get(k)!r}" for k in diff)
        raise ValueError(f"{out_dir} holds images sampled with other settings ({details}); "
                         "use another out= folder or delete it")
    return False


def write_settings(out_dir: Path, record: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{SETTINGS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out_dir / SETTINGS_FILE)


@dataclass(frozen=True)
class ImageJob:
    index: int               # global index: the seed offset and the shard key
    request: ImageRequest
    path: Path


def shard_jobs(jobs: list[ImageJob], shard_rank: int, num_shards: int) -> list[ImageJob]:
    return [job for job in jobs if job.index % num_shards == shard_rank]


def _save_png_atomic(image: torch.Tensor, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tensor_to_pil(image).save(tmp, format="PNG")
    os.replace(tmp, path)


@torch.no_grad()
def sample_jobs(model, tokenizer, jobs: list[ImageJob], cfg: ImageSamplingConfig,
                batch_size: int, progress=None, png_threads: int = 4,
                overlap_decode: bool = False) -> int:
    """Sample and write every job whose file is missing; returns how many were written.
    `overlap_decode`: see `sample_and_decode`."""
    from unimodal.model.vocabulary import image_prompt

    check_batch_size(batch_size)
    if jobs:
        validate_requests([job.request for job in jobs], model.vocab, max_prompt_tokens(model))
    todo = [job for job in jobs if not job.path.exists()]
    if progress is not None:
        progress.update(len(jobs) - len(todo))
    for folder in {job.path.parent for job in todo}:
        folder.mkdir(parents=True, exist_ok=True)
    chunks = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
    batches = (([image_prompt(model.vocab, j.request.caption, j.request.class_id) for j in chunk],
                [cfg.image_seed(j.index) for j in chunk]) for chunk in chunks)
    with ThreadPoolExecutor(png_threads) as pool:
        pending: deque = deque()
        decoded = sample_and_decode(model, tokenizer, batches, cfg, overlap_decode)
        for chunk, images in zip(chunks, decoded):
            pending.extend(pool.submit(_save_png_atomic, img, j.path) for img, j in zip(images, chunk))
            while len(pending) > 4 * batch_size:  # bound the images waiting for their PNG
                pending.popleft().result()
            if progress is not None:
                progress.update(len(chunk))
        while pending:
            pending.popleft().result()  # re-raises a failed write
    return len(todo)


def sample_shard(model, tokenizer, out_dir: Path, record: dict, jobs: list[ImageJob],
                 cfg: ImageSamplingConfig, batch_size: int, shard_rank: int, num_shards: int,
                 distributed: bool, overlap_decode: bool = False) -> tuple[int, int]:
    """This rank's share of `jobs`: check/record the settings, sample the missing PNGs with a
    progress bar, then leave the process group. Returns (written, jobs of this shard)."""
    from tqdm import tqdm

    from unimodal.distributed import shutdown

    if check_resume(out_dir, record) and (not distributed or shard_rank == 0):
        write_settings(out_dir, record)
    mine = shard_jobs(jobs, shard_rank, num_shards)
    with tqdm(total=len(mine), desc=f"sample {shard_rank}/{num_shards}", unit="img",
              dynamic_ncols=True, disable=distributed and shard_rank != 0) as bar:
        written = sample_jobs(model, tokenizer, mine, cfg, batch_size, bar,
                              overlap_decode=overlap_decode)
    if distributed:
        shutdown()  # every rank has finished its PNGs; rank 0 goes on alone
    return written, len(mine)
