"""Write a random-weight unified-model checkpoint of a named size, for benchmarks of the eval
scripts (e.g. FID-50K sampling throughput) on machines without a trained model.

    python eval/make_random_checkpoint.py --size d12 --out /tmp/d12_random
"""

import argparse
import tempfile
from pathlib import Path

from unimodal.model.export import save_unified
from unimodal.random_models import random_class_conditional_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size", default="d12")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, _ = random_class_conditional_model(args.size, Path(tmp), "cpu")
        save_unified(model.float(), tokenizer, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
