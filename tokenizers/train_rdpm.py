"""Train the RDPM tokenizer: images, audio or video (model.modality picks; same quantizer).

    python tokenizers/train_rdpm.py --config configs/rdpm_tiny.yaml [key=value ...] [--resume [PATH]]
    python tokenizers/train_rdpm.py --config configs/rdpm_video_tiny.yaml   # 8-frame clips, CPU
    torchrun --nproc_per_node 8 tokenizers/train_rdpm.py --config configs/rdpm_f16.yaml
"""

from unimodal.cli import parse_config_and_resume
from unimodal.tokenizer.training import TokenizerTrainConfig, train_tokenizer


def main(argv=None):
    cfg, resume = parse_config_and_resume(TokenizerTrainConfig, argv, __doc__, __file__)
    return train_tokenizer(cfg, resume=resume)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
