"""How fast the built-in shapes data renders (CPU), per image size: the loader's cost per sample.

    python eval/bench_shapes.py sizes=[64,128,256] images=500

Prints a table last (median of 5 repeats).
"""

import statistics
import time
from dataclasses import dataclass, field

from unimodal.cli import parse_config
from unimodal.config import ConfigError
from unimodal.data.shapes import render_sample


@dataclass
class BenchShapesConfig:
    sizes: list[int] = field(default_factory=lambda: [64, 128, 256])  # image sizes, one row each
    images: int = 500                     # images rendered per repeat
    repeats: int = 5                      # timed repeats per size (the median is reported)

    def validate(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError(f"sizes={self.sizes}: one or more sizes, each >= 1")
        for key in ("images", "repeats"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)}: must be >= 1")


def main(argv=None):
    args = parse_config(BenchShapesConfig, argv, __doc__, __file__)
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
