"""Tiny random audio and video RDPM tokenizers for the tests of further modalities (encoding, the
mixture's audio/video documents, sampling): small enough that a clip has a few dozen codes.
Without diffusion noise, as configs/rdpm_{audio,video}_*.yaml train them (a next-token document
cannot show the model the noise; see UnifiedModelConfig.resolve_image_geometry's warning)."""

from pathlib import Path

import torch

from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig, save_tokenizer


def tiny_audio_config(**kw) -> RDPMTokenizerConfig:
    """0.1 s clips at 16 kHz, 320 samples per code: grid (5,), K = 32, T = 2."""
    return RDPMTokenizerConfig.from_size("audio_tiny", **{
        "clip_samples": 1600, "base_channels": 8, "channel_mult": [1, 2, 2, 2, 2],
        "codebook_size": 32, "code_maps": 2, "noise_scale": 0.0, **kw})


def tiny_video_config(**kw) -> RDPMTokenizerConfig:
    """4 frames at 32 px, f8 in space and 2 in time: grid (2, 4, 4), K = 32, T = 2."""
    return RDPMTokenizerConfig.from_size("video_tiny", **{
        "num_frames": 4, "base_channels": 8, "channel_mult": [1, 2, 2, 2], "strides": [2, 2, 2],
        "temporal_strides": [1, 1, 2], "codebook_size": 32, "code_maps": 2, "noise_scale": 0.0,
        **kw})


def save_random_tokenizer(cfg: RDPMTokenizerConfig, folder: Path, seed: int = 0) -> Path:
    """An untrained tokenizer of `cfg` (weights seeded), saved as train_rdpm.py saves one."""
    torch.manual_seed(seed)
    tok = RDPMTokenizer(cfg).eval()
    torch.nn.init.normal_(tok.quantizer.bias_conv.weight, std=0.05)  # zero at init: let it act
    save_tokenizer(tok, folder)
    return folder
