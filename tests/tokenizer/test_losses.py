"""The reconstruction losses: L1/L2, and the multi-resolution STFT loss (zero for equal inputs,
positive otherwise, equal to a hand computation with numpy at one resolution)."""

import numpy as np
import pytest
import torch

from unimodal.config import ConfigError
from unimodal.tokenizer.losses import (PatchDiscriminator, TokenizerLossConfig, fit_fft_sizes,
                                       multi_resolution_stft_loss, reconstruction_loss)


def _waves(seed=0, n=2, samples=4000):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    return (tone + 0.05 * torch.randn(n, 1, samples, generator=gen)).clamp(-1, 1)


def test_l1_and_l2():
    x, y = torch.zeros(1, 1, 4), torch.tensor([[[1.0, -1.0, 2.0, 0.0]]])
    assert reconstruction_loss(y, x, "l2").item() == pytest.approx(6 / 4)
    assert reconstruction_loss(y, x, "l1").item() == pytest.approx(4 / 4)


def test_stft_loss_is_zero_for_equal_inputs_and_positive_otherwise():
    x = _waves()
    convergence, log_magnitude = multi_resolution_stft_loss(x, x.clone(), [512, 1024, 2048])
    assert convergence.item() == 0.0 and log_magnitude.item() == 0.0
    y = x + 0.01 * torch.randn_like(x)
    convergence, log_magnitude = multi_resolution_stft_loss(y, x, [512, 1024, 2048])
    assert convergence.item() > 0 and log_magnitude.item() > 0
    recon = x.clone().requires_grad_()  # gradients flow, and are finite at silence too
    sum(multi_resolution_stft_loss(recon * 0.9, x, [256])).backward()
    silent = torch.zeros(1, 1, 4000, requires_grad=True)
    sum(multi_resolution_stft_loss(silent, x[:1], [256])).backward()
    assert torch.isfinite(recon.grad).all() and torch.isfinite(silent.grad).all()


def _numpy_magnitude(wave: np.ndarray, n_fft: int) -> np.ndarray:
    """torch.stft(center=True, reflect pad, periodic Hann, hop n/4) written out by hand."""
    hop = n_fft // 4
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [padded[i:i + n_fft] * window for i in range(0, len(padded) - n_fft + 1, hop)]
    power = np.abs(np.fft.rfft(np.stack(frames), axis=1)) ** 2
    return np.sqrt(np.maximum(power, 1e-7)).T  # (freq, frames), as torch.stft gives


def test_stft_loss_matches_a_hand_computation_at_one_resolution():
    x, y = _waves(1, n=2), _waves(2, n=2)
    mx = np.stack([_numpy_magnitude(w, 256) for w in x[:, 0].double().numpy()])
    my = np.stack([_numpy_magnitude(w, 256) for w in y[:, 0].double().numpy()])
    for floor in (1.0, 1e-3):
        convergence, log_magnitude = multi_resolution_stft_loss(y, x, [256], log_floor=floor)
        assert convergence.item() == pytest.approx(np.linalg.norm(mx - my) / np.linalg.norm(mx),
                                                   rel=1e-4)
        assert log_magnitude.item() == pytest.approx(
            np.abs(np.log(my + floor) - np.log(mx + floor)).mean(), rel=1e-4)


def test_fft_sizes_shrink_to_fit_short_clips():
    assert fit_fft_sizes([512, 1024, 2048], 32000) == (512, 1024, 2048)
    assert fit_fft_sizes([512, 1024, 2048], 1600) == (512,)  # at most half the clip
    assert fit_fft_sizes([512, 1024, 2048], 3200) == (512, 1024)


def test_loss_config_values_that_cannot_work_name_the_key():
    for kwargs, key in ((dict(recon="l3"), "loss.recon"), (dict(stft_weight=-1), "loss.stft_weight"),
                        (dict(stft_fft_sizes=[8]), "loss.stft_fft_sizes"),
                        (dict(stft_log_floor=0), "loss.stft_log_floor")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            TokenizerLossConfig(**kwargs).validate()


def test_1d_discriminator_gives_patch_logits():
    disc = PatchDiscriminator(1, 8, 2, dims=1)
    assert disc(torch.randn(2, 1, 1024)).shape[:2] == (2, 1)
