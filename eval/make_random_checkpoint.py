"""Write a random-weight unified-model checkpoint of a named size, for benchmarks of the eval
scripts (e.g. FID-50K sampling throughput) on machines without a trained model.

    python eval/make_random_checkpoint.py size=d12 out=/tmp/d12_random
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config

from unimodal.model.export import save_unified
from unimodal.random_models import random_class_conditional_model


@dataclass
class RandomCheckpointConfig:
    size: str = "d12"                     # a named backbone size (unimodal/random_models.py)
    out: str = ""                         # the checkpoint folder to write

    def validate(self) -> None:
        if not self.out:
            raise ValueError("out= is required: the checkpoint folder to write")


def main(argv=None):
    args = parse_config(RandomCheckpointConfig, argv, __doc__, __file__)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, _ = random_class_conditional_model(args.size, Path(tmp), "cpu")
        save_unified(model.float(), tokenizer, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
