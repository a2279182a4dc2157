"""Benchmark RDPM tokenizer encoding throughput (img/s) at the paper's configuration.

    python eval/bench_tokenizer.py                       # 256 px, f16, K=4096, d=32, T=10
    python eval/bench_tokenizer.py batch_sizes=[64,256] variants=[bf16_cl] iters=20

Random weights: throughput does not depend on the values. Each variant is timed with CUDA events
after warm-up; the median over `iters` batches is reported. "model" times encoder + T-step
quantizer on noise already on the GPU; "end to end" adds the per-sample CPU noise generation
(`rdpm_noise`) and its host-to-device copy on the critical path. `pipeline_images=N` then runs
the real tokenizers/encode.py pipeline (ShardEncoder: shapes rendered at 256 px and noise drawn in
DataLoader workers, compiled bf16 encoder, tar shards written) on N images and reports its
steady-state img/s. Prints a table last.
"""

import statistics
import time
from dataclasses import dataclass, field

import torch

from unimodal.cli import parse_config
from unimodal.config import ConfigError
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig

VARIANTS = {  # name -> (autocast dtype or None, channels_last, torch.compile)
    "fp32": (None, False, False),
    "bf16": (torch.bfloat16, False, False),
    "bf16_cl": (torch.bfloat16, True, False),
    "bf16_compile": (torch.bfloat16, False, True),
    "bf16_cl_compile": (torch.bfloat16, True, True),
}


@dataclass
class BenchTokenizerConfig:
    size: str = "paper_f16"               # a named tokenizer size (RDPMTokenizerConfig.SIZES)
    batch_sizes: list[int] = field(default_factory=lambda: [64, 256])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))  # timed in this order
    iters: int = 20                       # timed batches per row (the median is reported)
    pipeline_images: int = 0              # also run tokenizers/encode.py's pipeline on N images
    workers: int = 12                     # DataLoader workers of that pipeline

    def validate(self) -> None:
        RDPMTokenizerConfig.from_size(self.size)  # an unknown size names the choices
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ConfigError(f"variants={self.variants}: choose from {list(VARIANTS)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch_sizes={self.batch_sizes}: one or more, each >= 1")
        if self.iters < 1 or self.pipeline_images < 0 or self.workers < 0:
            raise ConfigError("iters must be >= 1, pipeline_images and workers >= 0")


def time_cuda(fn, iters: int, warmup: int = 3) -> float:
    """Median milliseconds of fn() over iters runs, CUDA events around each."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None):
    args = parse_config(BenchTokenizerConfig, argv, __doc__, __file__)
    if not torch.cuda.is_available():
        raise SystemExit("bench_tokenizer.py needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = RDPMTokenizerConfig.from_size(args.size)
    device = torch.device("cuda")
    latent_shape = (cfg.latent_dim, *cfg.grid)
    rows = []
    for name in args.variants:
        dtype, channels_last, compiled = VARIANTS[name]
        torch.manual_seed(0)
        model = RDPMTokenizer(cfg).to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        encoder = torch.compile(model.encoder) if compiled else model.encoder

        encode = _encode_fn(model, encoder, dtype)

        for batch in args.batch_sizes:
            images = torch.rand(batch, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            seeds = list(range(batch))
            noise = rdpm_noise(seeds, cfg.code_maps, latent_shape, device=device)
            t0 = time.perf_counter()
            model_ms = time_cuda(lambda: encode(images, noise), args.iters)
            e2e_ms = time_cuda(lambda: encode(images, rdpm_noise(seeds, cfg.code_maps, latent_shape,
                                                                 device=device)),
                               max(3, args.iters // 4))
            noise_ms = statistics.median(
                [_cpu_ms(lambda: rdpm_noise(seeds, cfg.code_maps, latent_shape)) for _ in range(5)])
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append((name, batch, model_ms, batch / model_ms * 1e3, e2e_ms,
                         batch / e2e_ms * 1e3, noise_ms, peak))
            print(f"{name} batch {batch}: model {model_ms:.1f} ms, end-to-end {e2e_ms:.1f} ms "
                  f"(bench {time.perf_counter() - t0:.0f}s)", flush=True)
            torch.cuda.reset_peak_memory_stats()
        del model, encoder
        torch.cuda.empty_cache()
    pipeline = run_pipeline(cfg, args.pipeline_images, args.workers) if args.pipeline_images else None
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.size}: "
          f"{cfg.image_size}px f{cfg.downsample} K={cfg.codebook_size} d={cfg.latent_dim} "
          f"T={cfg.code_maps} | median of {args.iters}")
    print("| variant | batch | model ms | model img/s | e2e ms | e2e img/s | CPU noise ms | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.0f} | {r[4]:.1f} | {r[5]:.0f} | "
              f"{r[6]:.1f} | {r[7]:.1f} |")
    if pipeline:
        print(f"\ntokenizers/encode.py pipeline, {pipeline['written']} shapes images at "
              f"{cfg.image_size}px, batch 256, {args.workers} workers, compiled bf16: "
              f"{pipeline['steady_img_per_s']:.0f} img/s steady state "
              f"({pipeline['written'] / pipeline['seconds']:.0f} img/s including start-up and compile)")
    return rows


def run_pipeline(cfg, images: int, workers: int) -> dict:
    """The real encode pipeline on a random-weight tokenizer of this size."""
    import tempfile

    from unimodal.data.image_sources import ImageDataConfig
    from unimodal.tokenizer.encode_shards import EncodeConfig, ShardEncoder
    from unimodal.tokenizer.rdpm_tokenizer import save_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        save_tokenizer(RDPMTokenizer(cfg), f"{tmp}/tok")
        data = ImageDataConfig(source="shapes", image_size=cfg.image_size, num_samples=images,
                               num_workers=workers)
        enc = EncodeConfig(tokenizer=f"{tmp}/tok", out_dir=f"{tmp}/codes", data=data,
                           shard_size=2048, batch_size=256, device="cuda", compile=True)
        return ShardEncoder(enc).run()


def _encode_fn(model, encoder, dtype):
    @torch.no_grad()
    def encode(images, noise):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            return model.quantizer(encoder(images), noise=noise).codes

    return encode


def _cpu_ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
