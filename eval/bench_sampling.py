"""Benchmark class-conditional image sampling with the unified model (random weights).

    python eval/bench_sampling.py                       # depth-12 backbone, 256 px, 16x16 codes, T=10, CFG
    python eval/bench_sampling.py size=d16 batch_sizes=[1,64,256] compile=true
    python eval/bench_sampling.py batch_sizes=[1,256] compile=true cuda_graphs=true channels_last=true
    python eval/bench_sampling.py batch_sizes=[256] compile=true cuda_graphs=true channels_last=true fp8=tensorwise
    python eval/bench_sampling.py batch_sizes=[256] compile=true cuda_graphs=true channels_last=true sdpa=flash
    python eval/bench_sampling.py batch_sizes=[256] compile=true cuda_graphs=true channels_last=true \
        overlap_decode=true stream_batches=6

Builds the named backbone over a vocabulary of 1000 class tokens + K = 4096 codes and the paper's
RDPM tokenizer (256 px, f16), in bf16, then times `sample_codes` + tokenizer decoding with CUDA
synchronisation around each phase: median over `iters` runs after a warm-up. Reports images/s,
latency, and the share of time in the tokenizer's decoder. Prints a table last.
`compile`, `cuda_graphs`, `channels_last`, `overlap_decode`, `fp8`, `fp8_keep_bf16` and
`fuse_projections` are the arguments of `compile_for_sampling`, the function eval/sample.py
uses, so the timed model is the one users run.
`stream_batches=N` also times N batches of the largest size through `sample_and_decode` (what
eval/sample.py and eval/fid.py run), with the decoder in line, and with `overlap_decode=true`
also on a side stream beside the next batch's generation: the throughput of a long job.
`sdpa` puts one attention backend first (torch's own order otherwise); `profile=true` prints the
top CUDA kernels of one more run (best with cuda_graphs=false, so kernels are not hidden in graph
replays), then its top host operations by their own CPU time.
"""

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from unimodal.cli import parse_config
from unimodal.model.vocabulary import image_prompt
from unimodal.random_models import random_class_conditional_model
from unimodal.model.sampling import (ImageSamplingConfig, compile_for_sampling, sample_and_decode,
                                     sample_codes)


@dataclass
class BenchSamplingConfig:
    size: str = "d12"                     # a named backbone size
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64, 256])
    sampling: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)
    iters: int = 5                        # timed runs per batch size (the median is reported)
    compile: bool = False                 # torch.compile the backbone and the decoder
    cuda_graphs: bool = False             # with compile: the backbone's passes as CUDA graphs
    channels_last: bool = False           # with compile: the decoder in NHWC
    overlap_decode: bool = False          # with compile: the decoder without CUDA graphs, so that
                                          # stream_batches can also time it on a side stream
    fp8: str = ""                         # with compile: decoder-layer matmuls in FP8 (tensorwise | rowwise)
    fp8_keep_bf16: list[str] = field(default_factory=list)  # with fp8: projections left in bf16
    fuse_projections: bool = True         # with compile: q/k/v and gate/up as one matmul each
    fp8_swiglu_kernel: bool = True        # with fp8=rowwise: gate/up + SwiGLU as one Triton kernel
    stream_batches: int = 0               # > 0: img/s over this many batches of the largest size
    profile: bool = False                 # print the top CUDA kernels of one run at the largest batch
    sdpa: str = ""                        # prefer one SDPA backend (flash | cudnn | efficient); "" = torch's order


SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION}


def main(argv=None):
    args = parse_config(BenchSamplingConfig, argv, __doc__, __file__)
    if args.sdpa and args.sdpa not in SDPA_BACKENDS:
        raise ValueError(f"sdpa={args.sdpa!r}: one of {sorted(SDPA_BACKENDS)} or empty")
    if not torch.cuda.is_available():
        raise SystemExit("bench_sampling.py needs a CUDA device")
    if not args.sdpa:
        return bench(args)
    # Compilation happens inside (the warm-up run), so the compiled step uses this backend where
    # it can; the others stay as fallbacks (the decoder's 512-wide attention head is too wide for
    # flash).
    first = SDPA_BACKENDS[args.sdpa]
    rest = [b for b in (*SDPA_BACKENDS.values(), SDPBackend.MATH) if b != first]
    with sdpa_kernel([first, *rest], set_priority=True):
        return bench(args)


def bench(args: BenchSamplingConfig):
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, vocab = random_class_conditional_model(args.size, Path(tmp), device)
    tokenizer = tokenizer.to(torch.bfloat16)  # as load_unified gives it to eval/sample.py on CUDA
    params = model.num_parameters() / 1e6
    if (args.cuda_graphs or args.channels_last or args.fp8) and not args.compile:
        raise ValueError("cuda_graphs=true, channels_last=true and fp8 need compile=true")
    if args.stream_batches < 0:
        raise ValueError(f"stream_batches={args.stream_batches}: must be >= 0")
    if args.compile:
        compile_for_sampling(model, tokenizer, args.cuda_graphs, args.channels_last,
                             args.overlap_decode, args.fp8, args.fuse_projections,
                             tuple(args.fp8_keep_bf16), args.fp8_swiglu_kernel)
    sampling = args.sampling
    rows = []
    for batch in args.batch_sizes:
        prompts = [image_prompt(vocab, class_id=i % 1000) for i in range(batch)]

        def run():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            codes = sample_codes(model, prompts, sampling, seeds=list(range(batch)))
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                images = tokenizer.decoder(tokenizer.codes_to_latent(codes))
            images.float().clamp(-1, 1)
            torch.cuda.synchronize()
            return t1 - t0, time.perf_counter() - t1

        run()  # warm-up (and compilation)
        times = [run() for _ in range(args.iters)]
        gen = statistics.median(t[0] for t in times)
        dec = statistics.median(t[1] for t in times)
        total = statistics.median(t[0] + t[1] for t in times)
        rows.append((batch, total * 1e3, batch / total, gen * 1e3, dec * 1e3, dec / (gen + dec),
                     torch.cuda.max_memory_allocated() / 2**30))
        print(f"batch {batch}: {total * 1e3:.0f} ms, {batch / total:.1f} img/s", flush=True)
    streams = []
    if args.stream_batches > 0:
        batch = max(args.batch_sizes)
        batches = [([image_prompt(vocab, class_id=(j * batch + i) % 1000) for i in range(batch)],
                    list(range(j * batch, (j + 1) * batch))) for j in range(args.stream_batches)]
        for overlap in (False, True) if args.overlap_decode else (False,):
            for _ in range(2):  # the first pass warms the side stream's allocator up
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in sample_and_decode(model, tokenizer, batches, sampling, overlap):
                    pass
                torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
            streams.append((overlap, args.stream_batches * batch / seconds))
            print(f"stream, decoder {'overlapped' if overlap else 'in line'}: "
                  f"{streams[-1][1]:.1f} img/s", flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=110))
        # Host time too: at small batches the step can wait on Python and launches, not kernels.
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=110))
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} | backbone {args.size} "
          f"({params:.0f}M trainable params, bf16) | T={model.tok_cfg.code_maps}, 16x16 codes, "
          f"CFG {sampling.cfg_scale} {sampling.cfg_schedule}, 256 px | {'compiled' if args.compile else 'eager'}, CUDA graphs "
          f"{'on' if args.cuda_graphs else 'off'}, decoder {'NHWC' if args.channels_last else 'NCHW'}"
          f" bf16 | SDPA {args.sdpa or 'default'} | fp8 {args.fp8 or 'off'}"
          f"{' (bf16: ' + ','.join(args.fp8_keep_bf16) + ')' if args.fp8 and args.fp8_keep_bf16 else ''}"
          f"{' + SwiGLU kernel' if args.fp8 == 'rowwise' and args.fp8_swiglu_kernel else ''}"
          f" | projections {'fused' if args.fuse_projections else 'separate'} | median of {args.iters}")
    print("| batch | total ms | img/s | generator ms | decoder ms | decoder share | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.1f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.0%} | {r[6]:.1f} |")
    for overlap, rate in streams:
        print(f"| {max(args.batch_sizes)} x {args.stream_batches} batches, sample_and_decode, decoder "
              f"{'overlapped' if overlap else 'in line'} | | {rate:.1f} | | | | |")
    return rows


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
