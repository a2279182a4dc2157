"""The tokenizer's training losses (unimodal/tokenizer/losses.py): LPIPS on a local VGG16 file
(full or features-only state dict, frozen), the PatchGAN discriminator (2-D and 1-D), the hinge loss
and the adaptive GAN weight against hand-computed values; the waveform losses L1/L2 and the
multi-resolution STFT loss (zero for equal inputs, positive otherwise, equal to a numpy hand
computation at one resolution); and the config's errors naming the key."""

import warnings

import numpy as np
import pytest
import torch

from unimodal.config import ConfigError
from unimodal.tokenizer import losses
from unimodal.tokenizer.losses import (PatchDiscriminator, PerceptualLoss, TokenizerLossConfig,
                                       adaptive_gan_weight, build_perceptual, fit_fft_sizes,
                                       hinge_d_loss, multi_resolution_stft_loss,
                                       reconstruction_loss)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A VGG16 state dict as torchvision names it, trunk only (the classifier is never read:
    leaving its 120M weights out keeps the file small)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    return path


def test_perceptual_loss_loads_local_vgg_file(vgg_file, tmp_path):
    loss = PerceptualLoss(str(vgg_file))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, -x).item() > 0
    state = torch.load(vgg_file)
    torch.testing.assert_close(loss.lpips.net.slice1[0].weight, state["features.0.weight"])
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a VGG16"):
        PerceptualLoss(str(tmp_path / "bad.pth"))


def test_a_features_only_file_loads_and_the_loss_stays_frozen(vgg_file, tmp_path):
    state = torch.load(vgg_file)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    torch.save(features, tmp_path / "features.pth")
    loss = PerceptualLoss(str(tmp_path / "features.pth"))
    # slice 5 of LPIPS-VGG holds the trunk's conv 28 (the last one): the index is kept
    torch.testing.assert_close(dict(loss.lpips.net.slice5.named_children())["28"].weight,
                               features["28.weight"])
    loss.train()
    assert not loss.training and not any(m.training for m in loss.modules())
    assert not any(p.requires_grad for p in loss.parameters())
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    loss(x, torch.zeros_like(x)).backward()      # gradients still reach the images
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_build_perceptual_and_the_config_check(vgg_file, tmp_path, monkeypatch):
    assert build_perceptual(TokenizerLossConfig(perceptual_weight=0.0,
                                                perceptual_weights_path="/nowhere.pth")) is None
    with pytest.warns(UserWarning, match="perceptual_weights_path is empty: the LPIPS perceptual loss is OFF"):
        assert build_perceptual(TokenizerLossConfig()) is None
    monkeypatch.setattr(losses, "PerceptualLoss", lambda path: ("built from", path))  # VGG is slow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_perceptual(TokenizerLossConfig(perceptual_weights_path=str(vgg_file))) == \
            ("built from", str(vgg_file))
    TokenizerLossConfig().validate()
    TokenizerLossConfig(perceptual_weights_path=str(vgg_file)).validate()
    with pytest.raises(ConfigError, match=r"^tok\.loss\.perceptual_weights_path='.*missing\.pth': file not found"):
        TokenizerLossConfig(perceptual_weights_path=str(tmp_path / "missing.pth")).validate("tok.loss")


def test_discriminator_and_adaptive_weight():
    disc = PatchDiscriminator(3, 8, 2)
    logits = disc(torch.rand(2, 3, 32, 32))
    assert logits.dim() == 4 and logits.shape[1] == 1
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0
    w = torch.randn(4, requires_grad=True)
    rec, gan = (w * 3).sum(), (w * 1.5).sum()
    assert adaptive_gan_weight(rec, gan, w).item() == pytest.approx(2.0, rel=1e-3)


def test_patch_discriminator_layout():
    """32 px: stride-2 convs for the first `layers` levels (32 -> 16 -> 8), then two stride-1 4x4
    convs with padding 1 (8 -> 7 -> 6): one logit per patch of a 6 x 6 grid."""
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, 8, 2)
    assert disc(torch.rand(2, 3, 32, 32)).shape == (2, 1, 6, 6)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 1, 1]
    assert all(abs(c.weight.std().item() - 0.02) < 0.005 for c in convs[1:3])
    wide = PatchDiscriminator(3, 4, 5)               # channels capped at 8 x base
    assert [c.out_channels for c in wide.modules() if isinstance(c, torch.nn.Conv2d)] == [4, 8, 16, 32, 32, 32, 1]


def test_hinge_loss_and_adaptive_weight_by_hand():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.5])
    # 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.25 + 0.75)
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    rec, gan = (w ** 2).sum(), (w * 0.0).sum()          # grads: (6, 8) -> norm 10; zero
    weight = adaptive_gan_weight(rec, gan, w)
    assert weight.item() == pytest.approx(1e4) and not weight.requires_grad   # clamped, detached
    weight = adaptive_gan_weight((w ** 2).sum(), (w * 5).sum(), w)          # 10 / (5 sqrt 2 + 1e-4)
    assert weight.item() == pytest.approx(10 / (5 * 2 ** 0.5 + 1e-4), rel=1e-6)


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
