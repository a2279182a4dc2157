"""Video reconstruction metrics: per-frame PSNR against hand values, SSIM per frame, and the video
checker on reconstructions of built-in moving-shapes clips (clips in the tokenizer's layout)."""

import pytest
import torch

from unimodal.data.moving_shapes import MovingShapesDataset
from unimodal.metrics.video_reconstruction import (VideoReconstructionMeter, clips_as_frames,
                                                   psnr_per_clip, psnr_per_frame, ssim_per_frame)


def test_psnr_per_frame_against_hand_values():
    original = -torch.ones(1, 3, 2, 16, 16)       # (B, 3, F, H, W): black, 0 on [0, 1] pixels
    recon = original.clone()
    recon[:, :, 0] += 0.2                          # frame 0: off by 0.1 on [0, 1] -> MSE 0.01
    recon[:, :, 1] += 0.02                         # frame 1: off by 0.01 -> MSE 1e-4
    # PSNR = 10 log10(1 / MSE): 20 dB and 40 dB; the clip's figure is their mean
    assert psnr_per_frame(original, recon).tolist() == [pytest.approx([20.0, 40.0], abs=1e-3)]
    assert psnr_per_clip(original, recon).item() == pytest.approx(30.0, abs=1e-3)


def test_ssim_per_frame_is_one_for_equal_frames_and_lower_for_noise():
    clips = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    noisy = clips.clone()
    noisy[:, :, 2] = (noisy[:, :, 2] + 0.5 * torch.randn_like(noisy[:, :, 2])).clamp(-1, 1)
    ssim = ssim_per_frame(clips, noisy)
    assert ssim.shape == (2, 3)
    assert ssim[:, :2].tolist() == [pytest.approx([1.0, 1.0], abs=1e-4)] * 2
    assert (ssim[:, 2] < 0.9).all()


def test_meter_scores_reconstructions_with_the_checker():
    data = MovingShapesDataset(3, frames=8, image_size=32, seed=0)
    items = [data[i] for i in range(3)]
    clips = torch.stack([item["video"].transpose(0, 1) for item in items])  # (B, 3, F, H, W)
    keys = [item["key"] for item in items]
    assert torch.equal(clips_as_frames(clips)[0], items[0]["video"])
    meter = VideoReconstructionMeter()
    meter.update(clips, (clips + 0.02).clamp(-1, 1), keys)   # a near-perfect tokenizer
    meter.update(clips, torch.zeros_like(clips), keys)       # one that outputs grey
    out = meter.compute()
    assert out["clips"] == 6 and len(out["psnr_per_frame"]) == 8 and len(out["ssim_per_frame"]) == 8
    assert out["checker"]["clips"] == 6 and out["checker"]["prompt"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(B, 3, F, H, W\)"):
        clips_as_frames(clips[0])
    assert VideoReconstructionMeter().compute() == {"clips": 0}
