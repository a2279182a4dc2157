"""Loader throughput on the CPU, compared with what one GPU consumes at the uni_1b config.

    python mixing/benchmark.py                       # about a minute on 2 cores
    python mixing/benchmark.py seconds=10 gpu_tokens_per_s=52000   # a measured trainer rate

Writes synthetic shards to a temporary folder at the paper's image setting (T = 10 code maps of
16x16, K = 4096, d = 32, 1000 classes) and text documents of a few hundred tokens, then measures
packed tokens/s (rows x seq_len, padding included: what the GPU is fed) of
  1. each source kind alone, one reader in this process with one thread (= one loader worker);
  2. the mixture of configs/uni_1b.yaml (samples: text 0.5 pre-tokenized, captioned images 0.4,
     class images 0.1; 4 rows of 4096 per batch) in this process, and through PackedBatchStream
     with each `workers` count of DataLoader workers (default: data.num_workers); the first batch
     (worker start-up) is excluded.
The GPU side: model FLOPs per token of the 1b backbone (Llama-3.2-1B shape) on the measured mixture
batches (unimodal.pretraining.flops.step_flops), at `mfu` of `peak_tflops`; `gpu_tokens_per_s`
replaces the estimate with a measured rate. Prints a table last.
"""

import os
import sys

# mixing/ holds inspect.py, which would shadow the standard library's `inspect` for any import
# made while this script's folder is first on sys.path: take it off before importing anything.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from unimodal.cli import parse_config  # noqa: E402
from unimodal.config import ConfigError  # noqa: E402
from unimodal.data.mixture import DataConfig, PackedBatchStream, SourceConfig  # noqa: E402
from unimodal.data.text_corpus import shapes_text_corpus  # noqa: E402
from unimodal.data.text_shards import write_shard, write_text_shards  # noqa: E402
from unimodal.model.llama import LlamaBackbone  # noqa: E402
from unimodal.model.unified import BackboneConfig  # noqa: E402
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig  # noqa: E402
from unimodal.pretraining.flops import step_flops  # noqa: E402
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig  # noqa: E402


@dataclass
class LoaderBenchmarkConfig:
    seconds: float = 6.0                  # timed seconds per row
    workers: list[int] = field(default_factory=lambda: [DataConfig.num_workers])  # loader workers, a row each
    seq_len: int = 4096
    rows_per_batch: int = 4
    blocks_per_image: int = DataConfig.blocks_per_image
    shards: int = 4                       # shards per source
    per_shard: int = 250                  # samples per shard
    peak_tflops: float = 989.0            # H100 dense bf16
    mfu: float = 0.5                      # assumed model FLOPs utilisation
    gpu_tokens_per_s: float = 0.0         # measured tokens/s of one GPU; replaces the FLOPs estimate

    def validate(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"seconds={self.seconds}: must be > 0")
        if not self.workers or min(self.workers) < 0:
            raise ConfigError(f"workers={self.workers}: one or more counts, each >= 0")
        for key in ("seq_len", "rows_per_batch", "blocks_per_image", "shards", "per_shard"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)}: must be >= 1")
        if self.gpu_tokens_per_s < 0 or (not self.gpu_tokens_per_s
                                         and not (self.peak_tflops > 0 and 0 < self.mfu <= 1)):
            raise ConfigError("gpu_tokens_per_s must be >= 0; without it peak_tflops > 0 and "
                              "mfu in (0, 1] give the estimate")


def build_vocab(folder: Path, num_classes: int) -> tuple[Vocabulary, RDPMTokenizerConfig]:
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(shapes_text_corpus(3000)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "text"),
                                   vocab_size=1000, model_type="bpe", byte_fallback=True,
                                   bos_id=1, eos_id=2, pad_id=-1, unk_id=0, minloglevel=2,
                                   hard_vocab_limit=False)
    tok_cfg = RDPMTokenizerConfig.from_size("paper_f16")
    vocab = Vocabulary.build(VocabularyConfig(
        text_tokenizer=str(folder / "text.model"), num_classes=num_classes,
        codebook_size=tok_cfg.codebook_size, code_maps=tok_cfg.code_maps, grid=list(tok_cfg.grid)))
    return vocab, tok_cfg


def write_sources(folder: Path, vocab: Vocabulary, shards: int, per_shard: int) -> dict[str, str]:
    rng = np.random.default_rng(0)
    sentences = shapes_text_corpus(4000)
    docs = [" ".join(rng.choice(sentences, size=int(rng.integers(10, 60))))
            for _ in range(shards * per_shard)]
    write_text_shards(docs, folder / "text_ids", vocab, per_shard, keep_text=False)
    write_text_shards(docs, folder / "text_raw", None, per_shard, keep_text=True)
    for kind in ("class_images", "caption_images"):
        (folder / kind).mkdir()
        for s in range(shards):
            records = []
            for i in range(per_shard):
                buf = io.BytesIO()
                codes = rng.integers(0, vocab.codebook_size, (vocab.code_maps, *vocab.grid))
                np.save(buf, codes.astype(np.uint16))
                rec = {"__key__": f"{s:03d}-{i:05d}", "codes.npy": buf.getvalue(),
                       "seed.txt": str(int(rng.integers(0, 2**62))).encode()}
                if kind == "class_images":
                    rec["cls"] = str(int(rng.integers(0, vocab.num_classes))).encode()
                else:
                    rec["txt"] = rng.choice(sentences).encode()
                records.append(rec)
            write_shard(folder / kind / f"shard-{s:06d}.tar", records)
    last = f"{shards - 1:06d}"
    return {name: str(folder / name / f"shard-{{000000..{last}}}.tar")
            for name in ("text_ids", "text_raw", "class_images", "caption_images")}


def timed(stream: PackedBatchStream, seconds: float) -> tuple[float, float, list[dict]]:
    """(packed tokens/s, non-padding tokens/s, batches) after the first batch, for `seconds`."""
    batches = iter(stream)
    next(batches)  # worker start-up and first shard reads are not steady state
    start, seen = time.perf_counter(), []
    while time.perf_counter() - start < seconds:
        seen.append(next(batches))
    elapsed = time.perf_counter() - start
    positions = sum(b["input_ids"].numel() for b in seen)
    placed = sum(int(b["source_tokens"].sum()) for b in seen)
    return positions / elapsed, placed / elapsed, seen


def gpu_flops_per_token(vocab: Vocabulary, tok_cfg: RDPMTokenizerConfig, batches: list[dict],
                        seq_len: int) -> float:
    backbone_cfg = BackboneConfig(size="1b", **BackboneConfig.SIZES["1b"])
    with torch.device("meta"):  # shapes only: nothing is allocated
        backbone = LlamaBackbone(backbone_cfg.to_hf(vocab.size))
    # step_flops reads only these attributes of a UnifiedModel (which cannot be built on meta)
    model = SimpleNamespace(backbone=backbone, vocab=vocab, tok_cfg=tok_cfg,
                            cfg=SimpleNamespace(code_head="shared", image_objective="rdpm"))
    flops = tokens = 0
    for b in batches:
        has_target, is_block = b["targets"] >= 0, b["block_ids"] >= 0
        flops += step_flops(model, b["input_ids"].numel(), int((has_target & ~is_block).sum()),
                            int((has_target & is_block).sum()), int(is_block.sum()), seq_len)
        tokens += b["input_ids"].numel()
    return flops / tokens


def main(argv=None):
    args = parse_config(LoaderBenchmarkConfig, argv, __doc__, __file__)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vocab, tok_cfg = build_vocab(folder, num_classes=1000)
        shards = write_sources(folder, vocab, args.shards, args.per_shard)
        kinds = {"text_ids": "text", "text_raw": "text", "class_images": "class_images",
                 "caption_images": "caption_images"}

        def config(weights: dict[str, float], workers: int) -> DataConfig:
            return DataConfig(sources=[SourceConfig(name=n, kind=kinds[n], shards=shards[n], weight=w)
                                       for n, w in weights.items()], seq_len=args.seq_len,
                              rows_per_batch=args.rows_per_batch,
                              blocks_per_image=args.blocks_per_image, num_workers=workers)

        rows = []
        torch.set_num_threads(1)  # what a loader worker gets
        for name in kinds:
            packed, placed, _ = timed(PackedBatchStream(config({name: 1.0}, 0), vocab,
                                                        tok_cfg.latent_dim), args.seconds)
            rows.append((f"{name} alone", "1 (in process)", packed, placed))
            print(f"{rows[-1][0]}: {packed:,.0f} tokens/s", flush=True)
        mix = {"text_ids": 0.5, "caption_images": 0.4, "class_images": 0.1}
        packed, placed, batches = timed(PackedBatchStream(config(mix, 0), vocab, tok_cfg.latent_dim),
                                        args.seconds)
        rows.append(("uni_1b mixture", "1 (in process)", packed, placed))
        per_worker = packed
        flops = gpu_flops_per_token(vocab, tok_cfg, batches, args.seq_len)
        for workers in args.workers:
            packed, placed, _ = timed(PackedBatchStream(config(mix, workers), vocab,
                                                        tok_cfg.latent_dim), args.seconds)
            rows.append(("uni_1b mixture", f"{workers} (DataLoader)", packed, placed))
            print(f"mixture, {workers} workers: {packed:,.0f} tokens/s", flush=True)

    gpu = args.gpu_tokens_per_s or args.mfu * args.peak_tflops * 1e12 / flops
    source = "measured (gpu_tokens_per_s)" if args.gpu_tokens_per_s else (
        f"estimate: {flops / 1e9:.2f} GFLOP/token at {args.mfu:.0%} MFU of {args.peak_tflops:g} TFLOP/s")
    print(f"\nCPU: {os.cpu_count()} cores, torch {torch.__version__}; {args.rows_per_batch} rows of "
          f"{args.seq_len}, "
          f"k = {args.blocks_per_image}, T = {vocab.code_maps}, {vocab.grid[0]}x{vocab.grid[1]} codes")
    print(f"one GPU at uni_1b consumes {gpu:,.0f} tokens/s ({source})\n")
    print(f"{'stream':<30} {'workers':<16} {'tokens/s':>11} {'non-pad/s':>11} {'x GPU':>7}")
    for what, workers, packed, placed in rows:
        print(f"{what:<30} {workers:<16} {packed:>11,.0f} {placed:>11,.0f} {packed / gpu:>7.2f}")
    return {"rows": rows, "gpu_tokens_per_s": gpu, "per_worker_tokens_per_s": per_worker}


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
