"""RDPM's step weights (`data.step_weights`): which of the T steps a training document sees.

The draw lives in unimodal/model/objectives/rdpm.py; the mixture stream applies it, checks the
key and saves it in its resume state.
"""

import dataclasses

import numpy as np
import pytest

from mixture_fixtures import CODE_MAPS, LATENT_DIM, code_shards, data_config, text_shards
from unified_fixtures import make_assets
from unimodal.config import ConfigError, load_config
from unimodal.data.mixture import MixtureStream, PackedBatchStream
from unimodal.data.mixture_report import InspectConfig
from unimodal.model.objectives.rdpm import draw_steps, step_probabilities


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))[3]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp("shards")
    return {"ids": text_shards(root / "ids", "ids", 4, 60, vocab, "ids"),
            "long": text_shards(root / "long", "long", 2, 30, vocab, "txt", max_words=200),
            "cls": code_shards(root / "cls", "cls", 4, 50, "class_images"),
            "cap": code_shards(root / "cap", "cap", 4, 50, "caption_images")}


def _resume_config(shards):
    return data_config([("ids", "text", shards["ids"], 1.0), ("long", "text", shards["long"], 2.0),
                        ("cls", "class_images", shards["cls"], 1.0),
                        ("cap", "caption_images", shards["cap"], 1.0)], num_workers=0)


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def _block_steps(cfg, vocab, draws):
    stream = MixtureStream(cfg, vocab, LATENT_DIM, unit=0, num_units=1)
    return [[b["block_steps"] for b in stream.draw()[1][0].blocks] for _ in range(draws)]


def test_empty_step_weights_draw_the_steps_of_before(vocab, shards):
    """Regression: data.step_weights=[] (the default) and equal weights keep the uniform stream
    bit for bit; the steps below were drawn by the code before the key existed (seed 3)."""
    before = [[1, 4], [2, 4], [1, 2], [1, 3], [1, 3], [3, 4], [3, 4], [3, 4], [3, 4], [1, 2],
              [2, 3], [2, 3], [1, 2], [2, 4], [2, 3], [2, 3]]
    for weights in ([], [2.0] * CODE_MAPS):
        cfg = data_config([("cls", "class_images", shards["cls"], 1.0)], seed=3,
                          step_weights=weights)
        assert _block_steps(cfg, vocab, 16) == before, weights
    for seed in range(50):   # the helper's uniform path is the original draw, also at T = 10
        old = np.random.default_rng(seed)
        expected = np.sort(old.choice(10, size=3, replace=False) + 1).tolist()
        assert draw_steps(np.random.default_rng(seed), 10, 3) == expected


def test_step_weights_select_the_trained_steps(vocab, shards):
    """Zero weight = never trained: T = 10, k = 2, weights on 9 and 10 only -> always {9, 10};
    in the stream (T = 4) the weighted draw is reproducible and only uses the weighted steps."""
    probs = step_probabilities([0] * 8 + [1, 1], 10)
    rng = np.random.default_rng(0)
    assert all(draw_steps(rng, 10, 2, probs) == [9, 10] for _ in range(200))
    cfg = data_config([("cls", "class_images", shards["cls"], 1.0)], seed=3,
                      step_weights=[0, 0, 1, 1])
    steps = _block_steps(cfg, vocab, 20)
    assert steps == [[3, 4]] * 20
    cfg = dataclasses.replace(cfg, blocks_per_image=1, step_weights=[0, 1, 0, 3])
    steps = _block_steps(cfg, vocab, 40)
    assert {s[0] for s in steps} == {2, 4} and steps == _block_steps(cfg, vocab, 40)


def test_step_weight_frequencies_follow_the_weights():
    """T = 10, k = 2, steps 9 and 10 weighted 4x: each is in ~47% of images (uniform: 20%), the
    exact inclusion probability of drawing one step after the other in proportion to the weights
    left; within 0.015 over 20000 images (about 4 standard deviations)."""
    weights = [1.0] * 8 + [4.0, 4.0]
    p = np.asarray(weights) / sum(weights)
    # P(step i among 2 draws) = p_i + sum_{j != i} p_j * p_i / (1 - p_j)
    expected = np.array([p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(10) if j != i)
                         for i in range(10)])
    rng, probs, n = np.random.default_rng(1), step_probabilities(weights, 10), 20_000
    counts = np.zeros(10)
    for _ in range(n):
        for t in draw_steps(rng, 10, 2, probs):
            counts[t - 1] += 1
    observed = counts / n
    assert np.abs(observed - expected).max() < 0.015, (observed.round(3), expected.round(3))
    assert observed[8:].min() > 0.4 and observed[:8].max() < 0.16   # uniform: all 0.2


def test_step_weights_config_errors_name_the_key(vocab, shards, tmp_path):
    src = [("c", "class_images", shards["cls"], 1.0)]
    for weights, match in (([1.0] * (CODE_MAPS + 1), rf"data\.step_weights has {CODE_MAPS + 1} entries, "
                                                  rf"expected {CODE_MAPS}"),
                           ([1.0, -1.0, 1.0, 1.0], r"data\.step_weights=.*>= 0"),
                           ([0.0, 0.0, 0.0, 1.0], r"data\.step_weights=.*at least "
                                                  r"data\.blocks_per_image=2 positive"),
                           ([1.0, float("nan"), 1.0, 1.0], r"data\.step_weights=.*finite")):
        with pytest.raises(ConfigError, match=match):
            PackedBatchStream(data_config(src, step_weights=weights), vocab, LATENT_DIM)
    # From the command line / YAML as a list.
    cfg = load_config(InspectConfig, None, ["data.step_weights=[0, 0, 1, 2.5]"], validate=False)
    assert cfg.data.step_weights == [0.0, 0.0, 1.0, 2.5]


def test_resume_checks_the_step_weights(vocab, shards):
    cfg = dataclasses.replace(_resume_config(shards), step_weights=[1, 1, 2, 4])
    stream = PackedBatchStream(cfg, vocab, LATENT_DIM)
    take(stream, 2)
    state = stream.state_dict()
    with pytest.raises(ValueError, match="data.step_weights"):
        PackedBatchStream(_resume_config(shards), vocab, LATENT_DIM).load_state_dict(state)
    # A state saved before the key existed resumes a uniform stream.
    uniform = PackedBatchStream(_resume_config(shards), vocab, LATENT_DIM)
    take(uniform, 2)
    old = uniform.state_dict()
    del old["config"]["step_weights"]
    PackedBatchStream(_resume_config(shards), vocab, LATENT_DIM).load_state_dict(old)
    with pytest.raises(ValueError, match="data.step_weights"):
        PackedBatchStream(cfg, vocab, LATENT_DIM).load_state_dict(old)
