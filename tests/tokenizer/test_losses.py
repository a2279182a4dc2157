"""The tokenizer's training losses (unimodal/tokenizer/losses.py): LPIPS on a local VGG16 file
(full or features-only state dict, frozen), the PatchGAN discriminator, the hinge loss and the
adaptive GAN weight against hand-computed values, and the config's error naming the key."""

import warnings

import pytest
import torch

from unimodal.config import ConfigError
from unimodal.tokenizer import losses
from unimodal.tokenizer.losses import (PatchDiscriminator, PerceptualLoss, TokenizerLossConfig,
                                       adaptive_gan_weight, build_perceptual, hinge_d_loss)


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
