"""Pretrain the unified model with DeepSpeed.

    deepspeed train/pretrain.py --config configs/uni_1b.yaml
    deepspeed --num_gpus 8 train/pretrain.py --config configs/uni_d12.yaml train.steps=400000
    deepspeed --hostfile hostfile train/pretrain.py --config configs/uni_1b.yaml   (multi-node)
    python train/pretrain.py --config configs/uni_tiny.yaml            (one process, CPU or GPU)
    ... --resume              (latest checkpoint in train.out_dir)   --resume PATH

Overrides: key=value words after the flags, e.g. train.steps=100 deepspeed.zero_optimization.stage=3
"""

import argparse

from unimodal.config import load_config, split_config_args
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.trainer import pretrain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", nargs="?", const="latest", default=None)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # from the launcher
    args, rest = parser.parse_known_args(argv)
    cfg = load_config(PretrainConfig, args.config, split_config_args(rest))
    return pretrain(cfg, resume=args.resume)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
