"""Benchmark the sampler's FP8 gate/up + SwiGLU kernel (unimodal/model/float8_swiglu.py) against
the path it replaces, at one decoder layer's shape in one block pass.

    python eval/bench_fp8_swiglu.py                      # d12 at batch 256 with CFG: 131,072 rows, 768 -> 2 x 2048
    python eval/bench_fp8_swiglu.py rows=4096 sweep=false

Rows: the replaced path (torchao's rowwise scales, cuBLAS `torch._scaled_mm` writing gate and up
in bf16, then a compiled SwiGLU), the kernel as the sampler runs it (autotuned over
float8_swiglu's tiles), and with `sweep=true` each tile of a wider list, so that a better tile
can join the autotuned ones. Times are medians from `triton.testing.do_bench` (CUDA events,
L2 flushed between calls); TFLOP/s counts the GEMM alone. Prints a table last.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unimodal.cli import parse_config
from unimodal.model import float8_swiglu
from unimodal.model.float8_swiglu import fp8_swiglu, launch_fp8_swiglu, quantize_rowwise

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages, persistent, warp-specialized, TMA); BLOCK_N
# is the width of each of gate and up. The first two H100 sweeps (README) dropped the tiles that
# lost; these are the autotuned three, then the same loads through tensor descriptors (TMA).
SWEEP = [(128, 128, 64, 8, 3, False, False, False), (128, 128, 64, 8, 4, False, False, False),
         (128, 128, 128, 8, 3, False, False, False),
         (128, 128, 64, 8, 3, False, False, True), (128, 128, 64, 8, 4, False, False, True),
         (128, 128, 128, 8, 3, False, False, True), (128, 128, 64, 8, 3, True, False, True),
         (128, 128, 64, 8, 4, True, False, True), (128, 128, 128, 8, 3, True, False, True),
         (128, 128, 64, 8, 3, True, True, True)]


@dataclass
class BenchFp8SwigluConfig:
    rows: int = 131_072                   # 2 (CFG) x 256 images x 256 block positions
    width: int = 768                      # hidden size (d12)
    intermediate: int = 2048              # each of gate and up
    sweep: bool = True                    # also time each tile of SWEEP alone


def main(argv=None):
    args = parse_config(BenchFp8SwigluConfig, argv, __doc__, __file__)
    if not torch.cuda.is_available():
        raise SystemExit("bench_fp8_swiglu.py needs a CUDA device")
    from triton.testing import do_bench

    torch.manual_seed(0)
    x = torch.randn(args.rows, args.width, device="cuda", dtype=torch.bfloat16)
    weight = 0.05 * torch.randn(2 * args.intermediate, args.width, device="cuda")
    xq, x_inv = quantize_rowwise(x)
    wq, w_inv = quantize_rowwise(weight)
    w_inv = w_inv.view(-1)
    flop = 2 * args.rows * args.width * 2 * args.intermediate
    swiglu = torch.compile(lambda h: F.silu(h[:, :args.intermediate]) * h[:, args.intermediate:])

    def replaced():
        hidden = torch._scaled_mm(xq, wq.t(), scale_a=x_inv, scale_b=w_inv.view(1, -1),
                                  out_dtype=torch.bfloat16, use_fast_accum=True)
        return swiglu(hidden)

    rows = [("cuBLAS _scaled_mm + compiled SwiGLU (replaced)", do_bench(replaced)),
            ("kernel, autotuned", do_bench(lambda: fp8_swiglu(xq, x_inv, wq, w_inv)))]
    print(f"autotuned tile: {float8_swiglu._fp8_swiglu_tuned.best_config}", flush=True)
    if args.sweep:
        out = torch.empty(args.rows, args.intermediate, device="cuda", dtype=torch.bfloat16)
        for m, n, k, warps, stages, persistent, specialize, tma in SWEEP:
            tile = dict(BLOCK_M=m, BLOCK_N=n, BLOCK_K=k, GROUP_M=8, num_warps=warps,
                        num_stages=stages, PERSISTENT=persistent, WARP_SPECIALIZE=specialize,
                        TMA=tma)
            name = (f"tile {m}x{n}x{k}, {warps} warps, {stages} stages"
                    f"{', persistent' if persistent else ''}{', warp-specialized' if specialize else ''}"
                    f"{', TMA' if tma else ''}")
            try:
                ms = do_bench(lambda: launch_fp8_swiglu(xq, x_inv, wq, w_inv, out, tile))
            except Exception as error:  # e.g. out of shared memory for this tile
                print(f"{name}: {type(error).__name__}: {str(error)[:200]}", flush=True)
                continue
            rows.append((name, ms))
    base = rows[0][1]
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.rows} rows, "
          f"{args.width} -> 2 x {args.intermediate}, e4m3 rowwise")
    print("| path | ms | GEMM TFLOP/s | speed-up |")
    print("|---|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.3f} | {flop / ms / 1e9:.0f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
