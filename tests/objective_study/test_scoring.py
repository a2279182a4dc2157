"""Scoring one trained cell (unimodal/objective_study/scoring.py): the prompts it samples (held-out
captions, then every class), images as the PNGs would hold them, and a tiny checkpoint scored with
and without Inception weights, into the cell result and the table."""

import math

import numpy as np
import pytest
import torch

from unified_fixtures import make_assets, tiny_model
from unimodal.data.shapes import NUM_CLASSES, render_sample
from unimodal.metrics.shapes_checker import spec_for_class, spec_from_objects
from unimodal.metrics.shapes_features import (ShapesClassifierConfig, build_classifier,
                                              save_classifier)
from unimodal.metrics.smoke_weights import write_random_inception_weights
from unimodal.model.export import save_unified
from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.objective_study.config import ObjectivesStudyConfig, ScoreConfig
from unimodal.objective_study.report import results_table
from unimodal.objective_study.scoring import Scorer, to_uint8
from unimodal.objective_study.study import report_notes


def test_to_uint8_is_the_png_rounding_in_image_layout():
    images = torch.tensor([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 2, 3).expand(1, 3, 2, 3)
    out = to_uint8(images)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3, 3)          # (N, H, W, 3)
    assert out[0, :, :, 0].tolist() == [[0, 0, 128], [191, 255, 255]]


def test_requests_are_the_heldout_captions_then_every_class(tmp_path):
    classifier = build_classifier(ShapesClassifierConfig(image_size=32, channels=[8, 8, 8], feature_dim=8))
    save_classifier(classifier, {}, tmp_path / "classifier")
    cfg = ScoreConfig(captions=3, per_class=2, heldout_offset=500, data_seed=4,
                      classifier=str(tmp_path / "classifier"), reference_images=2, device="cpu")
    scorer = Scorer(cfg, ImageSamplingConfig())
    pairs = scorer.requests()
    assert len(pairs) == 3 + 2 * NUM_CLASSES
    for i, (request, spec) in enumerate(pairs[:3]):
        scene = render_sample(500 + i, 4, 32)
        assert request.caption == scene.caption and request.class_id is None
        assert spec == spec_from_objects(scene.objects)
    classes = [(r.class_id, spec) for r, spec in pairs[3:]]
    assert [c for c, _ in classes] == [c for c in range(NUM_CLASSES) for _ in range(2)]
    assert all(spec == spec_for_class(c) for c, spec in classes)
    assert all(r.caption is None for r, _ in pairs[3:])


def test_inception_fid_reaches_the_cell_result_and_the_table_only_with_weights(tmp_path):
    """The driver's scoring (Scorer) on a tiny checkpoint and a random-weight Inception file:
    3 caption images only (fewer than the 4 a side that precision/recall's k-NN would need)."""
    _, tok_dir, tok, vocab, vocab_cfg = make_assets(tmp_path)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, hidden_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1, intermediate_size=64)
    save_unified(model.eval(), tok, tmp_path / "ckpt")
    classifier = build_classifier(ShapesClassifierConfig(image_size=32, channels=[16, 32, 32],
                                                         feature_dim=16))
    save_classifier(classifier, {}, tmp_path / "classifier")
    inception = write_random_inception_weights(tmp_path / "inception.pth")
    score = dict(captions=3, per_class=0, classifier=str(tmp_path / "classifier"),
                 reference_images=3, batch_size=4, timing_batch_sizes=[1], timing_repeats=1,
                 device="cpu", inception_feature_layer="64")   # 64-d: a 2048-d sqrtm takes 30 s here
    sampling = ImageSamplingConfig(cfg_scale=2.0)

    def cell(scores: dict, budget: float) -> dict:
        return {"objective": "rdpm", "size": {"name": "s"}, "budget": budget, "steps": 1,
                "train_flops": budget, "scores": scores}

    scorer = Scorer(ScoreConfig(**score, inception_weights=str(inception)), sampling)
    with_fid = scorer.score(str(tmp_path / "ckpt"))
    assert math.isfinite(with_fid["inception_fid"]) and with_fid["inception_fid"] >= 0
    assert list(scorer.inception_reference) == [32]         # rendered at the generated size
    without = Scorer(ScoreConfig(**score), sampling).score(str(tmp_path / "ckpt"))
    assert "inception_fid" not in without and without["fd_shapes"] == with_fid["fd_shapes"]

    header, _, *rows = results_table([cell(with_fid, 1e6), cell(without, 2e6)], [1]).splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    fid = columns.index("Inception FID")
    values = [[c.strip() for c in row.strip("|").split("|")][fid] for row in rows]
    assert float(values[0]) == pytest.approx(with_fid["inception_fid"], rel=1e-3)
    assert values[1] == "-"                                  # a cell scored without the weights
    assert "Inception FID" not in results_table([cell(without, 2e6)], [1])
    study = ObjectivesStudyConfig(score=ScoreConfig(**score, inception_weights=str(inception)))
    assert any(n.startswith("Inception FID: ") and str(inception) in n
               for n in report_notes(study, [cell(with_fid, 1e6)]))
    assert not any("Inception FID:" in n for n in report_notes(study, [cell(without, 2e6)]))
