"""The shapes-classifier FD: a few dozen CPU steps beat chance on held-out renders, the saved file
gives the same features back, the distance is ~0 for a set against itself and far larger for noise
than for a second set of renders, and both scripts run end to end."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unimodal.data.shapes import NUM_CLASSES, render_sample
from unimodal.metrics.shapes_features import (METRIC_NAME, ClassifierTrainingConfig,
                                              ShapesClassifierConfig, features, heldout_renders,
                                              load_classifier, save_classifier,
                                              shapes_frechet_distance, shapes_statistics,
                                              train_classifier)

ROOT = Path(__file__).resolve().parents[2]
TINY = ShapesClassifierConfig(image_size=32, channels=[16, 32, 32], feature_dim=64)
HELDOUT = 2_000_000


def load_script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained():
    cfg = ClassifierTrainingConfig(steps=60, batch_size=32, lr=5e-3, warmup_steps=5,
                                   heldout_images=256, heldout_offset=HELDOUT)
    return train_classifier(cfg, TINY, log=lambda line: None)


def test_a_few_dozen_cpu_steps_beat_chance_on_heldout_renders(trained):
    _, record = trained
    acc = record["heldout"]
    assert acc["class_accuracy"] > 1.5 / NUM_CLASSES, acc  # 1/28 = chance, +-0.012 on 256 scenes
    scenes = [render_sample(HELDOUT + i, 0, 32).objects for i in range(256)]
    centres = np.array([o.center for s in scenes for o in s])
    assert acc["position_error"] < 0.85 * np.abs(centres - centres.mean(0)).mean(), acc  # mean centre
    assert record["images_per_second"] > 0 and record["metric"] == METRIC_NAME


def test_save_load_round_trip_gives_identical_features(trained, tmp_path):
    model, record = trained
    saved = save_classifier(model, record, tmp_path / "clf")
    loaded, loaded_record = load_classifier(tmp_path / "clf")
    images = heldout_renders(8, 5_000, image_size=48)  # another size: resized to 32
    assert torch.equal(features(model, images), features(loaded, images))
    assert loaded_record["heldout"] == record["heldout"] and len(saved["weights_sha256"]) == 64
    assert not any(p.suffix in (".pt", ".pth", ".bin") for p in (tmp_path / "clf").iterdir())


def test_fd_is_zero_for_a_set_against_itself_and_large_for_noise(trained):
    model, _ = trained
    a, b = heldout_renders(128, 1_000_000, image_size=32), heldout_renders(128, 1_000_128, image_size=32)
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    blank = np.full_like(a, 200)
    blank[:, :, :16] = 40  # two grey halves: a constant image has no covariance at all
    renders = shapes_frechet_distance(model, a, b)
    assert shapes_frechet_distance(model, a, a) == pytest.approx(0.0, abs=1e-3 * renders)
    assert shapes_frechet_distance(model, a, shapes_statistics(model, a)) < 1e-3 * renders
    assert shapes_frechet_distance(model, noise, b) > 5 * renders
    assert shapes_frechet_distance(model, blank, b) > 5 * renders
    chw = torch.from_numpy(a).permute(0, 3, 1, 2)  # (N, 3, H, W) reads the same as (N, H, W, 3)
    assert torch.equal(features(model, chw), features(model, a))


def test_bad_classifier_paths_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/classifier\.json"):
        load_classifier(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "classifier.json").write_text("{}")
    (tmp_path / "bad" / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="bad"):
        load_classifier(tmp_path / "bad")


def test_scripts_train_save_and_score_a_folder_end_to_end(tmp_path, capsys):
    train = load_script("eval/train_shapes_classifier.py")
    score = load_script("eval/shapes_fd.py")
    clf = tmp_path / "clf"
    words = [f"out={clf}", "steps=3", "batch_size=8", "heldout_images=16", "device=cpu",
             "model.image_size=32", "model.channels=[16,16]", "model.feature_dim=16"]
    record = train.main(words)
    assert (clf / "weights.safetensors").is_file() and json.loads((clf / "classifier.json").read_text())
    header = capsys.readouterr().out.strip().splitlines()[-3]  # the table is printed last
    assert header.startswith("| model |") and "img/s" in header and "count_accuracy" in header
    assert record["training"]["steps"] == 3
    with pytest.raises(Exception, match="already holds"):
        train.main(words)
    gen = tmp_path / "gen" / "images"
    gen.mkdir(parents=True)
    for i, image in enumerate(heldout_renders(20, 7_000, image_size=64)):  # 64 px, resized to 32
        Image.fromarray(image).save(gen / f"{i:03d}.png")
    report = score.main([f"classifier={clf}", f"generated={tmp_path / 'gen'}", f"out={tmp_path / 'fd'}",
                         "reference_images=24", "device=cpu"])
    assert report["metrics"]["generated"]["images"] == 20 and report["metrics"]["generated"]["fd"] >= 0
    md = (tmp_path / "fd" / "shapes_fd.md").read_text()
    assert md.startswith(f"## {METRIC_NAME}") and "not Inception FID" in md
    with pytest.raises(FileNotFoundError, match="missing"):
        score.main([f"classifier={tmp_path / 'missing'}", f"generated={gen}", "device=cpu"])
