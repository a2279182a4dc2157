"""The audio and video tokenizers through tokenizers/train_rdpm.py end to end on CPU (they learn,
evaluate, write WAVs / a GIF, resume exactly), and the per-modality config rules (errors
name the key)."""

import json
import wave

import pytest
import torch
from safetensors.torch import load_file

from tokenizer_training_fixtures import (ROOT, assert_resume_is_exact, tiny_audio_args,
                                         tiny_video_args, train_main)


def test_tiny_audio_tokenizer_trains_end_to_end_and_its_loss_falls(tmp_path):
    metrics = train_main()(tiny_audio_args(tmp_path, 24, "train.log_every=4"))
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # measured (2026-12-03): loss 6.8 at step 4 -> 3.9 at step 24 (MR-STFT falls most), SNR up
    assert sum(r["loss"] for r in logs[-2:]) < 0.75 * sum(r["loss"] for r in logs[:2])
    assert {"stft_sc", "stft_mag", "snr", "clips_per_s"} <= set(logs[-1])
    assert logs[-1]["snr"] > logs[0]["snr"]
    assert metrics["code_rate"] == {"codes_per_second": 50.0, "tokens_per_second": 200.0,
                                    "bits_per_second": 1200.0}
    assert metrics["clips"] == 8 and metrics["stft_distance"] > 0 and "snr_db" in metrics
    assert "checker" not in metrics  # 0.2 s crops of the notes: the captions do not hold
    assert json.loads((tmp_path / "metrics.json").read_text())["snr_db"] == metrics["snr_db"]
    with wave.open(str(tmp_path / "reconstructions_wav" / "00_reconstruction.wav")) as clip:
        assert (clip.getframerate(), clip.getnchannels(), clip.getnframes()) == (16000, 1, 3200)
    state = load_file(str(tmp_path / "tokenizer" / "tokenizer.safetensors"))
    assert state["encoder.conv_in.weight"].dim() == 3  # Conv1d: (out, in, kernel)


@pytest.mark.parametrize("args", [tiny_audio_args, tiny_video_args], ids=["audio", "video"])
def test_resume_is_exact(tmp_path, args):
    assert_resume_is_exact(args, tmp_path, 4, "train.eval_images=2")


def test_full_length_notes_are_scored_by_the_checker(tmp_path):
    """2 s clips hold every note clip whole, so the held-out metrics include the prompt checker."""
    metrics = train_main()(tiny_audio_args(tmp_path, 2, "model.clip_samples=32000",
                                           "train.batch_size=2", "train.eval_images=2",
                                           "data.heldout_samples=2"))
    assert metrics["checker"]["clips"] == 2 and 0 <= metrics["checker"]["prompt"] <= 1


@pytest.mark.parametrize("override, key", [
    ("data.source=shapes", r"data\.source='shapes': model\.modality=audio takes"),
    ("data.source=folder", r"data\.path=''"),
    ("loss.recon=l3", r"loss\.recon"),
    ("loss.perceptual_weights_path=/x.pth", r"loss\.perceptual_weights_path"),
    ("data.num_samples=0", r"data\.num_samples"),
])
def test_bad_audio_training_values_name_the_key(override, key):
    from unimodal.config import ConfigError, load_config
    from unimodal.tokenizer.training import TokenizerTrainConfig

    with pytest.raises(ConfigError, match=key):
        load_config(TokenizerTrainConfig, ROOT / "configs/rdpm_audio_tiny.yaml", [override])


def test_the_stft_loss_is_refused_for_images():
    from unimodal.config import ConfigError, load_config
    from unimodal.tokenizer.training import TokenizerTrainConfig

    with pytest.raises(ConfigError, match=r"loss\.stft_weight=1\.0: the STFT loss is for"):
        load_config(TokenizerTrainConfig, ROOT / "configs/rdpm_tiny.yaml", ["loss.stft_weight=1"])


def test_tiny_video_tokenizer_trains_end_to_end_and_its_loss_falls(tmp_path):
    from PIL import Image

    metrics = train_main()(tiny_video_args(tmp_path, 24))
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # measured (2026-12-03): loss 0.85 at step 4 -> 0.47 at step 24, per-frame PSNR 9.3 -> 13.4 dB
    assert sum(r["loss"] for r in logs[-2:]) < 0.8 * sum(r["loss"] for r in logs[:2])
    assert logs[-1]["psnr"] > logs[0]["psnr"] and "clips_per_s" in logs[-1]
    assert metrics["code_rate"] == {"codes_per_clip": 256, "tokens_per_clip": 1024,
                                    "tokens_per_frame": 128.0, "bits_per_clip": 6144.0}
    assert metrics["clips"] == 4 and len(metrics["psnr_per_frame"]) == 8
    assert metrics["checker"]["clips"] == 4 and 0 <= metrics["checker"]["prompt"] <= 1
    with Image.open(tmp_path / "reconstructions.gif") as gif:  # 4 rows of original | reconstruction
        assert gif.size == (64, 128) and gif.n_frames >= 2
    state = load_file(str(tmp_path / "tokenizer" / "tokenizer.safetensors"))
    assert state["encoder.conv_in.weight"].dim() == 5  # Conv3d: (out, in, t, h, w)


@pytest.mark.parametrize("override, key", [
    ("data.source=shapes", r"data\.source='shapes': model\.modality=video takes"),
    ("model.num_frames=7", r"model\.num_frames=7 is not a positive multiple of the temporal"),
    ("model.num_frames=32", r"model\.num_frames=32: data\.source=moving_shapes renders 2\.\.16"),
    ("model.temporal_strides=[2]", r"model\.temporal_strides: strides=\[2\]: need 2"),
    ("model.image_size=34", r"model\.image_size=34 is not divisible"),
    ("model.in_channels=1", r"model\.in_channels=1: video frames are RGB"),
    ("loss.gan_weight=0.5", r"loss\.gan_weight=0\.5 with loss\.gan_start=2000 < train\.steps"),
    ("loss.perceptual_weights_path=/x.pth", r"loss\.perceptual_weights_path"),
    ("loss.stft_weight=1", r"loss\.stft_weight=1\.0: the STFT loss is for model\.modality=audio"),
])
def test_bad_video_training_values_name_the_key(override, key):
    from unimodal.config import ConfigError, load_config
    from unimodal.tokenizer.training import TokenizerTrainConfig

    overrides = [override] + (["loss.gan_start=2000", "train.steps=3000"]
                              if override.startswith("loss.gan") else [])
    with pytest.raises(ConfigError, match=key):
        load_config(TokenizerTrainConfig, ROOT / "configs/rdpm_video_tiny.yaml", overrides)
