"""FID / IS / precision-recall through torch-fidelity, with a random-weight Inception file written
here: FID(a, a) ~ 0 < FID(a, b), parity with torch_fidelity.calculate_metrics, ADM-style npz and
statistics references, and errors that name the missing weights option.

FID(a, a) ~ 0 < FID(a, b) is shown on the standard 2048-d features; the other tests use the 64-d
layer, because one 2048-d FID costs several seconds on the 2-core CI box (the code path is the
same, only the layer name differs)."""

import numpy as np
import pytest
import torch
from PIL import Image

from unimodal.data.shapes import render_sample
from unimodal.metrics.generation import (POOL_FEATURES, FidStatistics, ImageArrayDataset,
                                         InceptionFeatures, generation_metrics,
                                         image_folder_dataset, load_reference,
                                         metrics_from_features, require_inception_weights)
from unimodal.metrics.smoke_weights import write_random_inception_weights

N = 6  # images per set: > k = 3 for precision/recall, and each costs ~0.1-0.3 s of CPU Inception
SMALL = "64"


def _write_folder(images: np.ndarray, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("generation_metrics")
    weights = str(write_random_inception_weights(root / "inception.pth"))
    a = np.stack([render_sample(i, 0, 64).image for i in range(N)])
    b = 255 - np.stack([render_sample(100 + i, 1, 64).image for i in range(N)])  # another look
    extractor = InceptionFeatures(weights, "cpu", batch_size=N, layers=(POOL_FEATURES, SMALL))
    feat_a, feat_b = extractor(ImageArrayDataset(a)), extractor(ImageArrayDataset(b))
    # Each FID costs seconds on 2 cores (eigenvalues of a 2048 x 2048 product): compute these once.
    return {"root": root, "weights": weights, "a": a, "b": b,
            "dir_a": _write_folder(a, root / "a"), "dir_b": _write_folder(b, root / "b"),
            "feat_a": feat_a, "feat_b": feat_b,
            "a_vs_a": metrics_from_features(feat_a, feat_a, isc_splits=2),
            "b_vs_a": metrics_from_features(feat_b, feat_a, isc_splits=2),
            "b_vs_a_small": metrics_from_features(feat_b, feat_a, isc_splits=2, feature_layer=SMALL)}


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_positive_against_another(sets):
    same, other = sets["a_vs_a"], sets["b_vs_a"]
    assert other["fid"] > 0.05
    assert abs(same["fid"]) < 1e-3 * other["fid"]
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    for m in (same, other):
        assert m["inception_score"] >= 1.0 and np.isfinite(m["inception_score_std"])
        assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0
        assert m["num_generated"] == N and m["num_reference_images"] == N


def test_metrics_match_torch_fidelity_calculate_metrics_on_folders(sets):
    """Our features (uint8 arrays) and math against torch-fidelity's own end-to-end call on PNGs."""
    import torch_fidelity

    theirs = torch_fidelity.calculate_metrics(
        input1=str(sets["dir_b"]), input2=str(sets["dir_a"]), fid=True, isc=True, prc=True,
        feature_extractor="inception-v3-compat", feature_layer_fid=SMALL, feature_layer_prc=SMALL,
        isc_splits=2,
        feature_extractor_weights_path=sets["weights"], cuda=False, cache=False,
        save_cpu_ram=True, batch_size=N, verbose=False)
    ours = sets["b_vs_a_small"]
    assert ours["fid"] > 0
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3, abs=1e-6)
    assert ours["inception_score"] == pytest.approx(theirs["inception_score_mean"], rel=1e-5)
    assert ours["precision"] == pytest.approx(theirs["precision"])
    assert ours["recall"] == pytest.approx(theirs["recall"])


def test_adm_npz_reference_uses_its_statistics_for_fid_and_its_images_for_recall(sets, tmp_path):
    stats_b = FidStatistics.from_features(sets["feat_b"][SMALL])
    npz = tmp_path / "VIRTUAL_test_labeled.npz"  # the ADM layout: arr_0 NHWC uint8 + mu/sigma
    np.savez(npz, arr_0=sets["a"], mu=stats_b.mu, sigma=stats_b.sigma,
             mu_s=np.zeros(3), sigma_s=np.eye(3))
    ref = load_reference(npz)
    assert ref.kind == "npz" and len(ref.images) == N
    folder = image_folder_dataset(sets["dir_a"])
    assert all(torch.equal(ref.images[i], folder[i]) for i in range(N))  # same uint8 CHW tensors
    m = generation_metrics(sets["dir_a"], ref, sets["weights"], batch_size=N, isc_splits=2,
                           feature_layer=SMALL)
    # FID is symmetric: a against b's mu/sigma is FID(b, a). So FID came from the file's mu/sigma ...
    assert m["fid"] == pytest.approx(sets["b_vs_a_small"]["fid"], rel=1e-3)
    assert m["precision"] == 1.0 and m["recall"] == 1.0  # ... precision/recall from its arr_0 images
    assert m["fid_reference"].startswith("precomputed")


def test_statistics_only_references(sets, tmp_path):
    stats_a = FidStatistics.from_features(sets["feat_a"][SMALL])
    torch.save({"mu": stats_a.mu, "sigma": stats_a.sigma}, tmp_path / "fidelity_stats.pt")
    stats_a.save(tmp_path / "stats.npz")
    for path in (tmp_path / "fidelity_stats.pt", tmp_path / "stats.npz"):
        ref = load_reference(path)
        assert ref.images is None and np.allclose(ref.statistics.mu, stats_a.mu)
    m = metrics_from_features(sets["feat_b"], None, load_reference(tmp_path / "stats.npz").statistics,
                              feature_layer=SMALL)
    assert m["precision"] is None and m["recall"] is None
    assert m["fid"] == pytest.approx(sets["b_vs_a_small"]["fid"], rel=1e-6)
    with pytest.raises(ValueError, match="2048"):  # a reference of another feature size
        metrics_from_features(sets["feat_b"], None, load_reference(tmp_path / "stats.npz").statistics)
    with pytest.raises(ValueError, match="arr_0"):
        np.savez(tmp_path / "empty.npz", other=np.zeros(2))
        load_reference(tmp_path / "empty.npz")


def test_missing_or_wrong_inception_weights_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="inception_weights.*weights-inception-2015-12-05"):
        require_inception_weights(None)
    with pytest.raises(FileNotFoundError, match=r"inception_weights=.*nope\.pth.*github\.com"):
        require_inception_weights(str(tmp_path / "nope.pth"))
    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="inception_weights"):
        InceptionFeatures(str(tmp_path / "wrong.pth"))


def test_precision_and_recall_are_not_swapped():
    """Generated features that collapse onto a few reference points: precise, not diverse."""
    from unimodal.metrics.generation import LOGITS

    torch.manual_seed(0)
    reference = torch.randn(400, 8)
    modes = reference[:6].repeat(10, 1)  # 60 samples near 6 of the 400 reference points
    generated = modes + 0.001 * torch.randn_like(modes)
    logits = torch.randn(60, 10)
    m = metrics_from_features({POOL_FEATURES: generated, LOGITS: logits},
                              {POOL_FEATURES: reference})
    assert m["precision"] > 0.9 and m["recall"] < 0.3, m
