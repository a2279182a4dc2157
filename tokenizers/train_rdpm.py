"""Train the RDPM image tokenizer.

    python tokenizers/train_rdpm.py --config configs/rdpm_tiny.yaml [key=value ...] [--resume [PATH]]
    torchrun --nproc_per_node 8 tokenizers/train_rdpm.py --config configs/rdpm_f16.yaml
"""

import argparse

from unimodal.config import load_config, split_config_args
from unimodal.tokenizer.training import TokenizerTrainConfig, train_tokenizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="resume from the latest checkpoint in train.out_dir, or from PATH")
    args, rest = parser.parse_known_args(argv)
    cfg = load_config(TokenizerTrainConfig, args.config, split_config_args(rest))
    return train_tokenizer(cfg, resume=args.resume)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
