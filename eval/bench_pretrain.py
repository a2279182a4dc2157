"""Benchmark pretraining throughput: tokens/s, TFLOP/s, MFU and peak memory of the real DeepSpeed
loop (train/pretrain.py's Pretrainer) on synthetic packed batches.

    python eval/bench_pretrain.py --config configs/uni_1b.yaml --steps 30 data.rows_per_batch=2
    python eval/bench_pretrain.py --config configs/uni_d12.yaml --steps 30
    deepspeed --num_gpus 2 eval/bench_pretrain.py --config configs/uni_1b.yaml --json z2.json

Synthetic data with the real layout: a dummy word-level text tokenizer of the config's text size
(128,000 for the Llama-3 shape), a random-weight RDPM tokenizer of the config's image size, and
packed rows of text documents and captioned image documents (k blocks of h*w codes). The first
`--warmup` steps (compilation, allocator) are excluded; the median of the logged windows of
`--window` steps is reported. Tokens/s is summed over ranks and also given per GPU. Prints a table
last; `--json` also writes it (eval/gpu_multi_run.sh compares world sizes and ZeRO stages).
"""

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from unimodal.config import load_config, split_config_args
from unimodal.data.sequences import image_document, pack_documents, text_document
from unimodal.model.vocabulary import Vocabulary
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.trainer import Pretrainer
from unimodal.tokenizer.rdpm_tokenizer import (RDPMTokenizer, RDPMTokenizerConfig,
                                             load_tokenizer_config, save_tokenizer)


def dummy_text_tokenizer(folder: Path, size: int) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(size - 2)}
    vocab.update({"<s>": size - 2, "</s>": size - 1})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return folder


class SyntheticStream:
    def __init__(self, vocab: Vocabulary, latent_dim: int, cfg: PretrainConfig, distinct: int = 8):
        rng = random.Random(0)
        t, (h, w), k = vocab.steps, vocab.grid, cfg.data.blocks_per_image
        self.batches = []
        for _ in range(distinct):
            docs, used, row = [], 0, 0
            while row < cfg.data.rows_per_batch:
                doc = self._document(vocab, latent_dim, rng, t, h, w, k)
                if len(doc) > cfg.data.seq_len:
                    continue
                if used + len(doc) > cfg.data.seq_len:  # this row is full: start the next one
                    row, used = row + 1, 0
                    if row == cfg.data.rows_per_batch:
                        break
                docs.append(doc)
                used += len(doc)
            self.batches.append(pack_documents(docs, cfg.data.seq_len, cfg.data.rows_per_batch,
                                               vocab.pad_id))

    @staticmethod
    def _document(vocab, latent_dim, rng, t, h, w, k):
        if rng.random() < 0.5:
            n = rng.randint(200, 1500)
            return text_document(vocab, [rng.randrange(vocab.text_size - 2) for _ in range(n)])
        caption = [rng.randrange(vocab.text_size - 2) for _ in range(rng.randint(8, 40))]
        codes = torch.randint(0, vocab.codebook_size, (t, h, w))
        return image_document(vocab, [vocab.bos_id, *caption, vocab.boi_id], codes,
                              rng.randrange(2**40), sorted(rng.sample(range(1, t + 1), k)),
                              latent_dim, prompt_targets=True)

    def __iter__(self):
        while True:
            yield from self.batches

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def profile_steps(trainer: Pretrainer, warmup: int, steps: int):
    """A profiler that records optimizer steps warmup+1 .. warmup+steps of trainer.run()."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available()
                                           else [])
    prof = profile(activities=activities, schedule=schedule(wait=warmup, warmup=1, active=steps,
                                                            repeat=1))
    engine_step, prof.step_times = trainer.engine.step, []

    def step_and_mark(*args, **kwargs):  # the loop calls engine.step once per micro-batch
        boundary = trainer.engine.is_gradient_accumulation_boundary()
        result = engine_step(*args, **kwargs)
        if boundary:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            prof.step_times.append(time.perf_counter())
            prof.step()
        return result

    trainer.engine.step = step_and_mark
    prof.first_active = warmup + 1    # index into step_times where the recorded steps begin
    return prof


def print_profile(prof, steps: int, rows: int = 15) -> None:
    events = prof.key_averages()
    cuda = torch.cuda.is_available()
    device_us = sum(e.self_device_time_total for e in events) if cuda else 0.0
    times = prof.step_times[prof.first_active - 1:prof.first_active + steps]
    wall_us = (times[-1] - times[0]) * 1e6 if len(times) > 1 else float("nan")
    print(f"\nprofile of {steps} steps: wall {wall_us / steps / 1000:.1f} ms/step")
    if cuda:
        print(f"GPU kernels {device_us / steps / 1000:.1f} ms/step (GPU busy "
              f"{device_us / wall_us:.0%} of wall)")
        print(events.table(sort_by="self_device_time_total", row_limit=rows))
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--window", type=int, default=5, help="optimizer steps per timed window")
    parser.add_argument("--text-vocab", type=int, default=128000)
    parser.add_argument("--json", default=None, help="also write the result here (rank 0)")
    parser.add_argument("--image-tokenizer", default="",
                        help="a trained tokenizer folder for the image geometry (default: a "
                             "random-weight paper_f16 tokenizer, 16x16 codes, K = 4096)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="torch.profiler over N optimizer steps after --warmup; prints the "
                             "ops that take the most GPU and CPU time, and the GPU-busy share")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.steps - args.warmup < args.window:
        parser.error(f"--steps {args.steps} leaves fewer than one timed window of --window "
                     f"{args.window} steps after --warmup {args.warmup}")
    tmp = Path(tempfile.mkdtemp())
    if args.image_tokenizer:
        tok_dir = Path(args.image_tokenizer)
        tok_cfg = load_tokenizer_config(tok_dir)
    else:
        tok_cfg, tok_dir = RDPMTokenizerConfig.from_size("paper_f16"), tmp / "tok"
        save_tokenizer(RDPMTokenizer(tok_cfg), tok_dir)
    text = dummy_text_tokenizer(tmp / "text", args.text_vocab)
    overrides = [f"model.image_tokenizer={tok_dir}", f"model.vocab.text_tokenizer={text}",
                 f"train.out_dir={tmp / 'run'}", f"train.steps={args.steps}",
                 f"train.log_every={args.window}",
                 f"train.checkpoint_every={10**9}", "train.tensorboard=false",
                 "data.sources=[]", *split_config_args(rest)]
    cfg = load_config(PretrainConfig, args.config, overrides, validate=False)
    cfg.train.checkpoint_every = 10**9
    cfg.model.resolve_image_geometry()
    vocab = Vocabulary.build(cfg.model.vocab)
    trainer = Pretrainer(cfg, stream=SyntheticStream(vocab, tok_cfg.latent_dim, cfg))
    trainer.save_checkpoint = lambda: None  # timing only
    trainer.export = lambda: None
    prof = profile_steps(trainer, args.warmup, args.profile) if args.profile else None
    if prof is not None:
        with prof:
            trainer.run()
    else:
        trainer.run()
    if trainer.rank != 0:
        return None
    records = [json.loads(x) for x in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > args.warmup]
    med = {k: statistics.median(r[k] for r in timed) for k in ("tokens_per_s", "tflops", "mfu")}
    peak = max(r.get("peak_mem_gib", 0) for r in records)
    ds = cfg.deepspeed_config(trainer.world)
    params = trainer.model.num_parameters() / 1e9
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{name} x{trainer.world} | {args.config} | {params:.3f}B trainable params | seq "
          f"{cfg.data.seq_len} | micro-batch {cfg.data.rows_per_batch} rows | ZeRO "
          f"{ds['zero_optimization']['stage']} | bf16 {ds.get('bf16', {}).get('enabled')} | "
          f"act. ckpt {cfg.train.activation_checkpointing} | compile {cfg.train.compile} | "
          f"steps {args.warmup + 1}-{args.steps}, median of {len(timed)} windows of {args.window}")
    print("| tokens/s | tokens/s per GPU | TFLOP/s | MFU | peak GiB | last loss |")
    print("|---|---|---|---|---|---|")
    print(f"| {med['tokens_per_s']:.0f} | {med['tokens_per_s'] / trainer.world:.0f} | "
          f"{med['tflops']:.1f} | {med['mfu']:.1%} | {peak:.1f} | {records[-1]['loss']:.3f} |")
    result = {**med, "tokens_per_s_per_gpu": med["tokens_per_s"] / trainer.world,
              "world_size": trainer.world, "zero_stage": ds["zero_optimization"]["stage"],
              "peak_mem_gib": peak, "device": name, "windows": len(timed),
              "micro_batch_rows": cfg.data.rows_per_batch, "seq_len": cfg.data.seq_len,
              "gradient_accumulation": cfg.train.gradient_accumulation, "compile": cfg.train.compile}
    if prof is not None:
        print_profile(prof, args.profile)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
