"""Print what a data mixture delivers: shares in samples and tokens, tokens per source, examples.

    python mixing/inspect.py --config configs/mix_quickstart.yaml      (after train/quickstart.sh)
    python mixing/inspect.py --config configs/mix_quickstart.yaml batches=500 data.num_workers=0

The YAML (InspectConfig in unimodal/data/mixture_report.py):
    vocab: runs/vocab                  # vocabulary folder (Vocabulary.save)
    image_tokenizer: runs/tokenizer    # or latent_dim: 32
    data:                              # DataConfig, as in the pretraining config
      seq_len: 4096
      sources:
        - {name: web, kind: text, shards: "shards/web/shard-{000000..000099}.tar", weight: 3}
        - {name: in1k, kind: class_images, shards: "shards/in1k/shard-{000000..000127}.tar", weight: 1}
"""

import os
import sys

# This file's name is the standard library's `inspect`, and python puts a script's folder first on
# sys.path, where every later `import inspect` (dataclasses, torch...) would find this file: take
# the folder off before importing anything else.
if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

from unimodal.cli import parse_config  # noqa: E402  (after the sys.path fix above)
from unimodal.data.mixture import PackedBatchStream  # noqa: E402
from unimodal.data.mixture_report import (InspectConfig, example_documents,  # noqa: E402
                                          measure_mixture, mixture_table)
from unimodal.model.vocabulary import Vocabulary  # noqa: E402


def main(argv=None):
    cfg = parse_config(InspectConfig, argv, __doc__, __file__)
    vocab = Vocabulary.load(cfg.vocab)
    latent_dim = cfg.resolved_latent_dim()

    stream = PackedBatchStream(cfg.data, vocab, latent_dim)
    stats = measure_mixture(stream, cfg.batches)
    examples = example_documents(cfg.data, vocab, latent_dim, cfg.examples)
    print("examples (reader 0 of rank 0):")
    for name, text in examples:
        print(f"  [{name}] {text}")
    print(stream.bad_data_summary())
    print(f"\nmixture over {cfg.batches} batches of {cfg.data.rows_per_batch} x {cfg.data.seq_len}:")
    print(mixture_table(cfg.data, stats))
    return stats


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
