"""Benchmark pretraining throughput: tokens/s, TFLOP/s, MFU and peak memory of the real DeepSpeed
loop (train/pretrain.py's Pretrainer) on synthetic packed batches.

    python eval/bench_pretrain.py pretrain_config=configs/uni_1b.yaml steps=30 overrides="data.rows_per_batch=2"
    python eval/bench_pretrain.py pretrain_config=configs/uni_d12.yaml steps=30
    python eval/bench_pretrain.py pretrain_config=configs/uni_1b.yaml overrides="model.fp8=tensorwise"
    deepspeed --num_gpus 2 eval/bench_pretrain.py pretrain_config=configs/uni_1b.yaml json=z2.json

`pretrain_config` is a train/pretrain.py YAML and `overrides` a string of its key=value words
(`overrides="model.backbone.num_layers=2 train.compile=false"`); the other keys are the bench's own
(`--config FILE` is a YAML of those keys). Synthetic data with the real layout: a dummy word-level
text tokenizer of `text_vocab` ids (128,000 for the Llama-3 shape), a random-weight RDPM tokenizer
of the paper's image size (or the geometry of `image_tokenizer`), and packed rows of text
documents and captioned image documents (k blocks of h*w codes). The first `warmup` steps
(compilation, allocator) are excluded; the median of the logged windows of `window` steps is
reported. Tokens/s is summed over ranks and also given per GPU. Prints a table last; `json=FILE`
also writes it (eval/gpu_multi_run.sh compares world sizes and ZeRO stages).

MFU is given under both conventions: attention over the full seq^2 score matrix (LLM Foundry,
torchtitan; flops.py's count) and causal-halved (Megatron: half of the attention term dropped).

`peer=true` (one GPU, no launcher) then times a plain transformers `LlamaForCausalLM` of the same
shape in the same process (unimodal/pretraining/transformers_peer.py): same seq_len, micro-batch,
gradient accumulation, AdamW, clipping and timing, trained by a plain PyTorch loop (no DeepSpeed:
one GPU has nothing for ZeRO to shard), eager and `torch.compile`d, bf16 on CUDA
(`peer_precision`). The last table then holds the project and both peer runs, with the ratio of
the project's tokens/s to each; `peer_eager=false` leaves the eager run out.
`sync_sites=N` (CUDA) counts the host-device synchronisations of N optimizer steps after the warm-up
by their Python call site (torch's sync debug mode) and prints them per step, most frequent first:
where the loop waits for the GPU.
On CUDA the synthetic batches sit in page-locked memory, as the real loader's do
(`pin_memory=false`: pageable, as before 2026-12-06).
`peer_vocab_multiple=64` pads the peer's vocabulary as
`resize_token_embeddings(pad_to_multiple_of=64)` would: the project pads its head for the matmuls,
and a peer padded too compares like with like.
"""

import collections
import gc
import json
import os
import random
import shlex
import statistics
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from unimodal.cli import parse_config
from unimodal.config import ConfigError, load_config
from unimodal.data.sequences import image_document, pack_documents, text_document
from unimodal.distributed import shutdown
from unimodal.model.vocabulary import Vocabulary
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.flops import attention_flops, causal_halved
from unimodal.pretraining.trainer import Pretrainer
from unimodal.pretraining.transformers_peer import PRECISIONS, time_peer
from unimodal.tokenizer.rdpm_tokenizer import (RDPMTokenizer, RDPMTokenizerConfig,
                                             load_tokenizer_config, save_tokenizer)


@dataclass
class BenchPretrainConfig:
    pretrain_config: str = ""             # the train/pretrain.py YAML to time (required)
    overrides: str = ""                   # key=value words applied to it, e.g. "data.seq_len=1024"
    steps: int = 30                       # optimizer steps in all
    warmup: int = 10                      # first steps left out of the timing
    window: int = 5                       # optimizer steps per timed window (median of windows)
    text_vocab: int = 128000              # ids of the dummy word-level text tokenizer
    image_tokenizer: str = ""             # a trained tokenizer folder ("" = random-weight paper_f16)
    profile: int = 0                      # torch.profiler over N steps after warmup (0 = off)
    sync_sites: int = 0                   # CUDA: count the host syncs of N steps after warmup
                                          # by Python call site (torch's sync debug mode; 0 = off)
    json: str = ""                        # also write the result here (rank 0)
    peer: bool = False                    # also time the plain transformers peer (one GPU)
    peer_precision: str = "autocast"      # CUDA: autocast (fp32 weights, bf16 autocast) | bf16
    peer_compile_backend: str = "inductor"  # torch.compile backend of the compiled peer run
    peer_eager: bool = True               # false: only the compiled peer (uni_1b's eager peer
                                          # peaks at 77 GiB, past what an 80 GB H100 holds)
    peer_vocab_multiple: int = 1          # the peer's vocabulary rounded up to a multiple of this,
                                          # as resize_token_embeddings(pad_to_multiple_of=) does
    pin_memory: bool = True               # CUDA: batches in page-locked memory, as the real
                                          # loader's (false: pageable, as before 2026-12-06)

    def validate(self) -> None:
        if not self.pretrain_config:
            raise ConfigError("pretrain_config is required (a train/pretrain.py YAML)")
        if not Path(self.pretrain_config).is_file():
            raise FileNotFoundError(f"pretrain_config={self.pretrain_config}: no such file")
        if self.image_tokenizer and not Path(self.image_tokenizer).is_dir():
            raise FileNotFoundError(f"image_tokenizer={self.image_tokenizer}: no such folder")
        if min(self.warmup, self.profile) < 0 or min(self.window, self.text_vocab) < 1:
            raise ConfigError("warmup and profile must be >= 0, window and text_vocab >= 1")
        if self.steps - self.warmup < self.window:
            raise ConfigError(f"steps={self.steps} leaves fewer than one timed window of "
                              f"window={self.window} steps after warmup={self.warmup}")
        self.pretrain_words()  # the overrides are key=value words
        if self.peer and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise ConfigError("peer=true compares one GPU with one GPU: run without a launcher")
        if self.sync_sites < 0 or (self.sync_sites and self.profile) \
                or self.warmup + self.sync_sites > self.steps:
            raise ConfigError(f"sync_sites={self.sync_sites}: >= 0, not with profile (each "
                              f"watches its own steps), and warmup + sync_sites <= steps="
                              f"{self.steps}")
        if self.sync_sites and not torch.cuda.is_available():
            raise ConfigError("sync_sites counts CUDA syncs: no CUDA device here (on the CPU, "
                              "tests/pretraining/test_trainer_host_syncs.py counts host reads)")
        if self.peer_vocab_multiple < 1:
            raise ConfigError(f"peer_vocab_multiple={self.peer_vocab_multiple}: must be >= 1")
        if self.peer_precision not in PRECISIONS:
            raise ConfigError(f"peer_precision={self.peer_precision!r}: choose one of {PRECISIONS}")
        if self.peer and not self.peer_compile_backend:
            raise ConfigError("peer_compile_backend: a torch.compile backend (inductor) is needed "
                              "for the compiled peer run")

    def pretrain_words(self) -> list[str]:
        try:
            words = shlex.split(self.overrides)
        except ValueError as err:
            raise ConfigError(f"overrides={self.overrides!r}: {err}") from err
        bad = [w for w in words if "=" not in w or w.startswith("=") or w.startswith("-")]
        if bad:
            raise ConfigError(f"overrides: {bad} are not key=value words of the pretraining "
                              "config (e.g. overrides=\"model.backbone.num_layers=2\")")
        return words


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
    """`distinct` packed batches, repeated. `pin`: in page-locked memory, as the real loader
    gives them on CUDA (DataLoader pin_memory), so that the loop's non-blocking copies to the GPU
    do not wait for the kernels queued before them."""

    def __init__(self, vocab: Vocabulary, latent_dim: int, cfg: PretrainConfig, distinct: int = 8,
                 pin: bool = False):
        rng = random.Random(0)
        t, (h, w), k = vocab.code_maps, vocab.grid, cfg.data.blocks_per_image
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
            batch = pack_documents(docs, cfg.data.seq_len, cfg.data.rows_per_batch, vocab.pad_id)
            self.batches.append({key: value.pin_memory() if pin and torch.is_tensor(value)
                                 else value for key, value in batch.items()})

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


def count_sync_sites(trainer: Pretrainer, warmup: int, steps: int) -> collections.Counter:
    """Counts, by the innermost three Python frames, the host-device synchronisations of optimizer
    steps warmup+1 .. warmup+steps of trainer.run(): torch.cuda's sync debug mode warns at each
    one (an .item(), a bool() of a CUDA tensor, a blocking copy), and the warning's stack is
    recorded. Filled while the loop runs; print it with print_sync_sites."""
    sites: collections.Counter = collections.Counter()
    engine_step, done = trainer.engine.step, [0]
    saved = warnings.catch_warnings()  # restores the filters and showwarning on disarm
    show = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return show(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1] if f.filename != warnings.__file__]
        sites[" <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}"
                          for f in reversed(frames[-3:]))] += 1

    def arm():
        saved.__enter__()
        warnings.showwarning = record
        warnings.simplefilter("always")  # every sync, not the first per line
        torch.cuda.set_sync_debug_mode("warn")

    def disarm():
        torch.cuda.set_sync_debug_mode("default")
        saved.__exit__(None, None, None)

    def step_and_count(*args, **kwargs):  # the loop calls engine.step once per micro-batch
        boundary = trainer.engine.is_gradient_accumulation_boundary()
        result = engine_step(*args, **kwargs)
        if boundary:
            done[0] += 1
            if done[0] == warmup:
                arm()
            elif done[0] == warmup + steps:
                disarm()
        return result

    trainer.engine.step = step_and_count
    if warmup == 0:
        arm()
    return sites


def _short(path: str) -> str:
    """A frame's file, from site-packages/ or the repository root on."""
    for root in ("site-packages/", f"{Path(__file__).resolve().parents[1]}/"):
        if root in path:
            return path.split(root, 1)[1]
    return path


BACKWARD_FRAME = "_engine_run_backward"  # torch.autograd: the frame that runs a backward


def print_sync_sites(sites: collections.Counter, steps: int, rows: int = 20) -> None:
    print(f"\nhost syncs of {steps} steps: {sum(sites.values())} "
          f"({sum(sites.values()) / steps:.1f} per optimizer step)")
    print("| syncs per step | where (innermost frame first) |\n|---|---|")
    for where, n in sites.most_common(rows):
        print(f"| {n / steps:.1f} | {where} |")
    if any(BACKWARD_FRAME in where.split(" <- ")[0] for where in sites):
        print(f"({BACKWARD_FRAME}: a sync inside the backward. The autograd engine runs CUDA "
              "backward ops on its own thread and replays their warnings when the backward ends, "
              "so the op is not named; on the CPU, tests/model/test_unified.py::"
              "test_a_training_step_makes_the_host_wait_for_nothing lists such ops by name.)")


def device_kernel_us(events) -> float:
    """GPU time of the device-side events alone (kernels, copies, memsets). A CPU op's self device
    time repeats the kernels it launched, and ProfilerStep* spans whole steps, so a sum over every
    event counted most kernels two or three times (before 2026-12-06: "GPU busy 372%")."""
    from torch.autograd import DeviceType

    return sum(e.self_device_time_total for e in events if e.device_type != DeviceType.CPU)


def print_profile(prof, steps: int, rows: int = 15) -> None:
    events = prof.key_averages()
    cuda = torch.cuda.is_available()
    device_us = device_kernel_us(events) if cuda else 0.0
    times = prof.step_times[prof.first_active - 1:prof.first_active + steps]
    wall_us = (times[-1] - times[0]) * 1e6 if len(times) > 1 else float("nan")
    print(f"\nprofile of {steps} steps: wall {wall_us / steps / 1000:.1f} ms/step")
    if cuda:
        print(f"GPU kernels {device_us / steps / 1000:.1f} ms/step (GPU busy "
              f"{device_us / wall_us:.0%} of wall)")
        print(events.table(sort_by="self_device_time_total", row_limit=rows))
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))


def print_peer_table(result: dict, cfg: PretrainConfig) -> None:
    """The project and the transformers peer runs in one table (one GPU each)."""
    peers = result["peers"]
    rows = [("project (DeepSpeed)", result)] + [
        (f"transformers peer, {name}" + (f" ({peer['compile']})" if name != "eager" else ""), peer)
        for name, peer in peers.items()]
    print(f"\nproject vs plain transformers LlamaForCausalLM | seq {cfg.data.seq_len} | "
          f"micro-batch {cfg.data.rows_per_batch} rows x {cfg.train.gradient_accumulation} "
          f"accumulated | peer {peers['compiled']['precision']}, head of "
          f"{peers['compiled']['head_rows']} rows | MFU against "
          f"{cfg.train.peak_tflops:g} TFLOP/s")
    print("| run | tokens/s | TFLOP/s full attn | TFLOP/s causal-halved | MFU full attn | "
          "MFU causal-halved | peak GiB | project tokens/s / this |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        ratio = result["tokens_per_s"] / r["tokens_per_s"]
        print(f"| {name} | {r['tokens_per_s']:.0f} | {r['tflops']:.1f} | {r['tflops_causal']:.1f} "
              f"| {r['mfu']:.1%} | {r['mfu_causal']:.1%} | {r['peak_mem_gib']:.1f} "
              f"| {ratio:.2f}x |")
    print(f"project / compiled peer: {result['ratio_to_compiled_peer']:.2f}x tokens/s")


def load_pretrain_config(args: BenchPretrainConfig, fixed: list[str]) -> PretrainConfig:
    """The pretraining config: its YAML, then the bench's `fixed` words, then `overrides`."""
    try:
        return load_config(PretrainConfig, args.pretrain_config, [*fixed, *args.pretrain_words()],
                           validate=False)
    except ConfigError as err:
        what = str(err).replace("command line: ", "overrides: ")
        raise ConfigError(f"eval/bench_pretrain.py: pretrain_config={args.pretrain_config}: {what}"
                          ) from err


def main(argv=None):
    args = parse_config(BenchPretrainConfig, argv, __doc__, __file__)
    result = run_bench(args)
    # every rank leaves the process group; not on an error, where a lone rank would hang at the barrier
    shutdown()
    return result


def run_bench(args: BenchPretrainConfig):
    load_pretrain_config(args, [])  # a bad key fails before any work
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
                 "data.sources=[]"]
    cfg = load_pretrain_config(args, overrides)
    cfg.train.checkpoint_every = 10**9
    cfg.model.resolve_image_geometry()
    vocab = Vocabulary.build(cfg.model.vocab)
    trainer = Pretrainer(cfg, stream=SyntheticStream(
        vocab, tok_cfg.latent_dim, cfg, pin=args.pin_memory and torch.cuda.is_available()))
    trainer.save_checkpoint = lambda: None  # timing only
    trainer.export = lambda: None
    prof = profile_steps(trainer, args.warmup, args.profile) if args.profile else None
    sync_sites = (count_sync_sites(trainer, args.warmup, args.sync_sites) if args.sync_sites
                  else None)
    if prof is not None:
        with prof:
            trainer.run()
    else:
        trainer.run()
    if trainer.rank != 0:
        return None
    records = [json.loads(x) for x in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > args.warmup]
    seq, peak_tflops = cfg.data.seq_len, cfg.train.peak_tflops
    for r in timed:  # Megatron's convention: half of this window's attention term dropped
        attention = attention_flops(trainer.model, r["tokens_per_s"], seq) / 1e12
        r["tflops_causal"] = causal_halved(r["tflops"], attention)
        r["mfu_causal"] = r["tflops_causal"] / (peak_tflops * trainer.world)
    med = {k: statistics.median(r[k] for r in timed)
           for k in ("tokens_per_s", "tflops", "mfu", "tflops_causal", "mfu_causal")}
    peak = max(r.get("peak_mem_gib", 0) for r in records)
    ds = cfg.deepspeed_config(trainer.world)
    params = trainer.model.num_parameters() / 1e9
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{name} x{trainer.world} | {args.pretrain_config} | {params:.3f}B trainable params | seq "
          f"{cfg.data.seq_len} | micro-batch {cfg.data.rows_per_batch} rows | ZeRO "
          f"{ds['zero_optimization']['stage']} | bf16 {ds.get('bf16', {}).get('enabled')} | "
          f"act. ckpt {cfg.train.activation_checkpointing} | compile {cfg.train.compile} | "
          f"fp8 {cfg.model.fp8 or 'off'} | "
          f"steps {args.warmup + 1}-{args.steps}, median of {len(timed)} windows of {args.window}")
    if cfg.model.fp8:
        print("fp8 matmuls: compare tokens/s; MFU is against the bf16 peak and so not a bf16 MFU")
    print("| tokens/s | tokens/s per GPU | TFLOP/s | MFU | MFU causal-halved | peak GiB "
          "| last loss |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {med['tokens_per_s']:.0f} | {med['tokens_per_s'] / trainer.world:.0f} | "
          f"{med['tflops']:.1f} | {med['mfu']:.1%} | {med['mfu_causal']:.1%} | {peak:.1f} | "
          f"{records[-1]['loss']:.3f} |")
    result = {**med, "tokens_per_s_per_gpu": med["tokens_per_s"] / trainer.world,
              "world_size": trainer.world, "zero_stage": ds["zero_optimization"]["stage"],
              "peak_mem_gib": peak, "device": name, "windows": len(timed),
              "micro_batch_rows": cfg.data.rows_per_batch, "seq_len": cfg.data.seq_len,
              "gradient_accumulation": cfg.train.gradient_accumulation, "compile": cfg.train.compile,
              "fp8": cfg.model.fp8}
    if prof is not None:
        print_profile(prof, args.profile)
    if sync_sites is not None:
        print_sync_sites(sync_sites, args.sync_sites)
    if args.peer:
        hf_config, device = trainer.model.backbone.config, trainer.device
        del trainer, prof  # free the project's weights and optimizer before the peer's
        gc.collect()
        result["peers"] = {
            name: time_peer(hf_config, cfg, device, args.steps, args.warmup, args.window,
                            backend, args.peer_precision, peak_tflops, args.peer_vocab_multiple)
            for name, backend in (("eager", ""), ("compiled", args.peer_compile_backend))
            if name == "compiled" or args.peer_eager}
        result["ratio_to_compiled_peer"] = (result["tokens_per_s"]
                                            / result["peers"]["compiled"]["tokens_per_s"])
        print_peer_table(result, cfg)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
