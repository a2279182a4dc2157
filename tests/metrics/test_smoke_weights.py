"""Random-weight stand-ins (unimodal/metrics/smoke_weights.py): the Inception file loads strictly
into torch-fidelity's extractor and gives finite features that tell images apart, the CLIP files
build a registered open_clip architecture whose weights load strictly, and both are a function of
the seed."""

import json

import pytest
import torch

from unimodal.metrics.smoke_weights import (TINY_CLIP_CONFIG, write_clip_config,
                                            write_random_clip_weights,
                                            write_random_inception_weights)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    root = tmp_path_factory.mktemp("inception")
    return write_random_inception_weights(root / "deep" / "inception.pth", seed=1), root


def test_inception_file_loads_strictly_and_features_tell_images_apart(inception):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path, _ = inception
    state = torch.load(path, weights_only=True)
    # the constructor loads the file with strict key matching: a missing or extra key fails here
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                      feature_extractor_weights_path=str(path)).eval()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    images = torch.zeros(3, 3, 64, 64, dtype=torch.uint8)
    images[1] += 255
    images[2, :, :32] += 128
    with torch.no_grad():
        (features,) = net(images)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    distances = torch.cdist(features, features)
    assert (distances[~torch.eye(3, dtype=torch.bool)] > 1e-3 * features.norm(dim=1).mean()).all()


def test_inception_weights_are_he_normal_and_a_function_of_the_seed(inception, tmp_path):
    path, _ = inception
    state = torch.load(path, weights_only=True)
    conv = max((v for k, v in state.items() if v.dim() == 4), key=lambda w: w.numel())
    fan_in = conv[0].numel()
    assert conv.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    again = torch.load(write_random_inception_weights(tmp_path / "again.pth", seed=1), weights_only=True)
    other = torch.load(write_random_inception_weights(tmp_path / "other.pth", seed=2), weights_only=True)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert not torch.equal(state[next(k for k, v in state.items() if v.dim() == 4)],
                           other[next(k for k, v in other.items() if v.dim() == 4)])


def test_clip_config_and_weights_build_the_registered_architecture(tmp_path):
    import open_clip

    config = write_clip_config(tmp_path / "cfg" / "unimodal-smoke-clip.json")
    assert json.loads(config.read_text()) == TINY_CLIP_CONFIG
    custom = write_clip_config(tmp_path / "custom.json", {**TINY_CLIP_CONFIG, "embed_dim": 16})
    assert json.loads(custom.read_text())["embed_dim"] == 16
    weights = write_random_clip_weights("unimodal-smoke-clip", tmp_path / "w" / "clip.pt", config, seed=3)
    state = torch.load(weights, weights_only=True)
    model = open_clip.create_model("unimodal-smoke-clip", pretrained=None)
    model.load_state_dict(state, strict=True)
    assert model.text_projection.shape[1] == TINY_CLIP_CONFIG["embed_dim"]
    same = torch.load(write_random_clip_weights("unimodal-smoke-clip", tmp_path / "same.pt", seed=3),
                      weights_only=True)                # registered once: no config needed again
    other = torch.load(write_random_clip_weights("unimodal-smoke-clip", tmp_path / "other.pt", seed=4),
                       weights_only=True)
    assert all(torch.equal(state[k], same[k]) for k in state)
    assert not all(torch.equal(state[k], other[k]) for k in state)
