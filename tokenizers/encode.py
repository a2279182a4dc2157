"""Encode images into webdataset shards of RDPM codes (+ noise seed, class id, caption).

    python tokenizers/encode.py tokenizer=runs/quickstart/tokenizer/tokenizer \
        out_dir=runs/quickstart/codes data.source=shapes data.num_samples=2000
    python tokenizers/encode.py --config configs/encode_imagenet.yaml data.path=/data/imagenet/train
    torchrun --nproc_per_node 8 tokenizers/encode.py --config ...   (shards split over GPUs)

Resumable: finished shards are kept; run the same command again after a crash.
"""

from unimodal.cli import parse_config
from unimodal.tokenizer.encode_shards import EncodeConfig, ShardEncoder
from unimodal import distributed as D


def main(argv=None):
    cfg = parse_config(EncodeConfig, argv, __doc__, __file__)
    try:
        return ShardEncoder(cfg).run()
    finally:
        D.shutdown()


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
