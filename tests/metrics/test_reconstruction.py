"""Reconstruction metrics (unimodal/metrics/reconstruction.py): PSNR against its closed form on
[0, 1] pixels, SSIM at its fixed points, a running mean that does not depend on the batching, and
the Inception weights check (errors naming the option, one clean copy per file version)."""

import math
import os

import pytest
import torch

from unimodal.metrics.reconstruction import (ReconstructionMeter, inception_weights_or_error,
                                             psnr_per_image, ssim_per_image)


def test_psnr_is_the_closed_form_on_unit_range_pixels():
    original = torch.zeros(3, 3, 8, 8)                          # 0.5 in [0, 1]
    offsets = torch.tensor([0.2, 0.02, -0.6])                   # in [-1, 1]: half that in [0, 1]
    recon = original + offsets[:, None, None, None]
    expected = [10 * math.log10(1 / (o / 2) ** 2) for o in offsets.tolist()]   # 20, 40, 10.46 dB
    torch.testing.assert_close(psnr_per_image(original, recon), torch.tensor(expected), atol=1e-3, rtol=0)
    clipped = psnr_per_image(original[:1], original[:1] + 5.0)  # clamped to 1: error 0.5
    assert clipped.item() == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-3)


def test_ssim_is_one_for_equal_images_and_lower_otherwise():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(ssim_per_image(images, images), torch.ones(2), atol=1e-5, rtol=0)
    noisy = ssim_per_image(images, images + 0.3 * torch.randn_like(images))
    assert noisy.shape == (2,) and (noisy < 0.9).all()


def test_the_running_mean_does_not_depend_on_the_batching():
    torch.manual_seed(1)
    original = torch.rand(5, 3, 16, 16) * 2 - 1
    recon = original + 0.1 * torch.randn_like(original)
    whole, split = ReconstructionMeter(), ReconstructionMeter()
    whole.update(original, recon)
    split.update(original[:2], recon[:2])
    split.update(original[2:], recon[2:])
    a, b = whole.compute(), split.compute()
    assert a["images"] == b["images"] == 5
    assert a["psnr"] == pytest.approx(b["psnr"]) and a["ssim"] == pytest.approx(b["ssim"])
    assert a["psnr"] == pytest.approx(psnr_per_image(original, recon).mean().item(), rel=1e-6)
    assert ReconstructionMeter().compute() == {"psnr": 0.0, "ssim": 0.0, "images": 0}


def test_inception_weights_errors_name_the_option_and_copies_follow_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^score\.inception_weights is required for FID"):
        inception_weights_or_error("", "score.inception_weights")
    with pytest.raises(FileNotFoundError, match=r"^inception_weights=.*nope\.pth: file not found"):
        inception_weights_or_error(str(tmp_path / "nope.pth"))
    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, path)
    first = inception_weights_or_error(str(path))
    assert inception_weights_or_error(str(path)) == first      # one copy per file version
    torch.save({"a": torch.ones(3)}, path)
    os.utime(path, ns=(1, 10**18))                              # a different version of the file
    second = inception_weights_or_error(str(path))
    assert second != first and torch.equal(torch.load(second, weights_only=True)["a"], torch.ones(3))
