"""Encode images into webdataset shards of RDPM codes (+ noise seed, class id, caption).

    python tokenizers/encode.py tokenizer=runs/quickstart/tokenizer/tokenizer \
        out_dir=runs/quickstart/codes data.source=shapes data.num_samples=2000
    python tokenizers/encode.py --config configs/encode_imagenet.yaml data.path=/data/imagenet/train
    torchrun --nproc_per_node 8 tokenizers/encode.py --config ...   (shards split over GPUs)

Resumable: finished shards are kept; run the same command again after a crash.
"""

import argparse

from unimodal.config import load_config, split_config_args
from unimodal.tokenizer.encode_shards import EncodeConfig, ShardEncoder
from unimodal import distributed as D


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML config (EncodeConfig); optional")
    args, rest = parser.parse_known_args(argv)
    cfg = load_config(EncodeConfig, args.config, split_config_args(rest))
    try:
        return ShardEncoder(cfg).run()
    finally:
        D.shutdown()


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
