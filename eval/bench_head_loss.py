"""Benchmark the pretraining output head: its matmul and cross-entropy, forward and backward, with
the head's rows padded to a multiple of 64 (what training runs) and unpadded.

    python eval/bench_head_loss.py                       # uni_1b's shape: 133,102 ids, width 2048
    python eval/bench_head_loss.py vocab=32000 rows=8192 compile=false

A vocabulary size that is not a multiple of 8 gives the head's logits rows that are not 16-byte
aligned, and cuBLAS then runs an sm80 fallback kernel on Hopper instead of its own kernels
(`head_cross_entropy_sums` in unimodal/model/unified.py pads the head to avoid it). `rows` is the
number of text positions of one micro-batch (uni_1b: 4 rows x 4096, less the image blocks);
`compile` times the function under torch.compile as `model.compile_loss` does. Median over
`iters` after `warmup` calls; prints a table last.
"""

import statistics
from dataclasses import dataclass

import torch

from unimodal.cli import parse_config
from unimodal.model.document import IGNORE
from unimodal.model.chunked_loss import HEAD_ROWS_MULTIPLE
from unimodal.model.unified import head_cross_entropy_sums


@dataclass
class BenchHeadLossConfig:
    vocab: int = 133_102                  # head rows (uni_1b with a 128,000-id text tokenizer)
    width: int = 2048                     # hidden size
    rows: int = 12_288                    # text positions per micro-batch
    compile: bool = True                  # as model.compile_loss
    warmup: int = 3
    iters: int = 10


def time_head(args: BenchHeadLossConfig, rows_multiple: int) -> float:
    """Median ms of one forward + backward of the head loss."""
    torch.manual_seed(0)
    hidden = torch.randn(args.rows, args.width, device="cuda", dtype=torch.bfloat16,
                         requires_grad=True)
    weight = (0.02 * torch.randn(args.vocab, args.width, device="cuda")).to(
        torch.bfloat16).requires_grad_()
    targets = torch.randint(0, args.vocab, (args.rows,), device="cuda")
    targets[::7] = IGNORE
    fn = head_cross_entropy_sums
    if args.compile:
        fn = torch.compile(head_cross_entropy_sums, dynamic=True)
    times = []
    for i in range(args.warmup + args.iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(hidden, weight, [targets], rows_multiple)[0].backward()
        end.record()
        torch.cuda.synchronize()
        hidden.grad = weight.grad = None
        if i >= args.warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None):
    args = parse_config(BenchHeadLossConfig, argv, __doc__, __file__)
    if not torch.cuda.is_available():
        raise SystemExit("bench_head_loss.py times CUDA kernels: no CUDA device here")
    unpadded = time_head(args, 1)
    padded = time_head(args, HEAD_ROWS_MULTIPLE)
    flops = 3 * 2 * args.rows * args.width * args.vocab   # forward + two backward matmuls
    print(f"\n{torch.cuda.get_device_name()} | vocab {args.vocab} | width {args.width} | rows "
          f"{args.rows} | compile {args.compile} | median of {args.iters}")
    print("| head | ms fwd+bwd | matmul TFLOP/s | speed-up |\n|---|---|---|---|")
    for name, ms in (("unpadded", unpadded), (f"padded to x{HEAD_ROWS_MULTIPLE}", padded)):
        print(f"| {name} | {ms:.2f} | {flops / ms / 1e9:.0f} | {unpadded / ms:.2f}x |")


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
