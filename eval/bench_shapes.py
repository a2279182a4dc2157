"""How fast the built-in shapes data renders (CPU), per image size: the loader's cost per sample.

    python eval/bench_shapes.py --sizes 64 128 256 --images 500

Prints a table last (median of 5 repeats).
"""

import argparse
import statistics
import time

from unimodal.data.shapes import render_sample


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--images", type=int, default=500, help="images per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            for i in range(args.images):
                render_sample(r * args.images + i, image_size=size)
            times.append((time.perf_counter() - start) / args.images)
        rows.append((size, statistics.median(times) * 1e3))
    lines = ["| image size | ms per image (median) | images/s per core |", "|---|---|---|"]
    lines += [f"| {size} | {ms:.3f} | {1e3 / ms:,.0f} |" for size, ms in rows]
    print("\n".join(lines), flush=True)
    return rows


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
