"""Pretrain the unified model with DeepSpeed.

    deepspeed train/pretrain.py --config configs/uni_1b.yaml
    deepspeed --num_gpus 8 train/pretrain.py --config configs/uni_d12.yaml train.steps=400000
    deepspeed --hostfile hostfile train/pretrain.py --config configs/uni_1b.yaml   (multi-node)
    python train/pretrain.py --config configs/uni_tiny.yaml            (one process, CPU or GPU)
    ... --resume              (latest checkpoint in train.out_dir)   --resume PATH

Overrides: key=value words after the flags, e.g. train.steps=100 deepspeed.zero_optimization.stage=3
"""

from unimodal.cli import parse_config_and_resume
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.trainer import pretrain


def main(argv=None):
    cfg, resume = parse_config_and_resume(PretrainConfig, argv, __doc__, __file__)
    return pretrain(cfg, resume=resume)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
