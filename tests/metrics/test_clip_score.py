"""CLIP score with open_clip from local files written here: a tiny registered architecture, random
weights, and the same weights after a few contrastive steps on four (image, prompt) pairs, where
matching pairs must score above shuffled ones."""

import numpy as np
import pytest
import torch
from PIL import Image

from unimodal.metrics.clip_score import (DEFAULT_PREFIX, ClipScorer, clip_score_summary,
                                         clip_weights_or_error, score_files)
from unimodal.metrics.smoke_weights import write_clip_config, write_random_clip_weights

NAME = "unimodal-tiny-clip"
COLORS = {"red": (230, 30, 30), "green": (30, 185, 50), "blue": (35, 75, 235), "yellow": (240, 220, 25)}


def _images():
    return [Image.fromarray(np.full((32, 32, 3), rgb, np.uint8)) for rgb in COLORS.values()]


PROMPTS = [f"a {name} square" for name in COLORS]


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    config = write_clip_config(root / f"{NAME}.json")
    random_weights = write_random_clip_weights(NAME, root / "random.pt", config)
    # A few contrastive steps on the four pairs (with the scoring prefix), saved as a second file.
    scorer = ClipScorer(str(random_weights), NAME, "cpu", config_file=str(config))
    model = scorer.model.train()
    pixels = torch.stack([scorer.transform(im) for im in _images()])
    tokens = scorer.tokenizer([DEFAULT_PREFIX + p for p in PROMPTS])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-wide model: thread hand-offs would cost more than they save
    for _ in range(40):
        img = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
        logits = img @ txt.t() * 10
        labels = torch.arange(len(PROMPTS))
        ce = torch.nn.functional.cross_entropy
        loss = ce(logits, labels) + ce(logits.t(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    torch.save(model.state_dict(), root / "trained.pt")
    return {"root": root, "config": str(config), "random": str(random_weights),
            "trained": str(root / "trained.pt")}


def test_random_weights_load_from_file_and_pairing_changes_the_score(clip_files):
    scorer = ClipScorer(clip_files["random"], NAME, "cpu", config_file=clip_files["config"])
    matched = scorer.cosine(_images(), PROMPTS)
    shuffled = scorer.cosine(_images(), PROMPTS[1:] + PROMPTS[:1])
    assert matched.shape == (4,) and matched.abs().max() <= 1.0
    assert not torch.allclose(matched, shuffled)
    # The same file loads the same weights: the scores are reproducible.
    again = ClipScorer(clip_files["random"], NAME, "cpu", config_file=clip_files["config"])
    assert torch.allclose(again.cosine(_images(), PROMPTS), matched)


def test_matching_pairs_score_above_shuffled_pairs_on_a_constructed_case(clip_files):
    scorer = ClipScorer(clip_files["trained"], NAME, "cpu", config_file=clip_files["config"])
    matched = clip_score_summary(scorer.cosine(_images(), PROMPTS))
    shuffled = clip_score_summary(scorer.cosine(_images(), PROMPTS[2:] + PROMPTS[:2]))
    assert matched["cosine_mean"] > shuffled["cosine_mean"] + 0.3
    assert matched["clip_score_100"] > shuffled["clip_score_100"]
    # The prefix is part of the text: without it (not how the model was tuned) the score moves.
    bare = ClipScorer(clip_files["trained"], NAME, "cpu", prefix="", config_file=clip_files["config"])
    assert not torch.allclose(bare.cosine(_images(), PROMPTS), scorer.cosine(_images(), PROMPTS))


def test_summary_names_both_conventions():
    s = clip_score_summary(torch.tensor([0.3, -0.1]))
    assert s["cosine_mean"] == pytest.approx(0.1)
    assert s["clip_score_100"] == pytest.approx(15.0)  # 100 x max(cos, 0), averaged
    assert s["pairs"] == 2


def test_score_files_reads_pngs_in_prompt_order(clip_files, tmp_path):
    scorer = ClipScorer(clip_files["trained"], NAME, "cpu", config_file=clip_files["config"])
    files = []
    for i, im in enumerate(_images()):
        im.save(tmp_path / f"{i:05d}.png")
        files.append(tmp_path / f"{i:05d}.png")
    from_files = score_files(scorer, files, PROMPTS, batch_size=3)
    assert torch.allclose(from_files, scorer.cosine(_images(), PROMPTS), atol=1e-5)


def test_missing_clip_weights_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="clip_weights is required.*ViT-B-32"):
        clip_weights_or_error(None, "ViT-B-32")
    with pytest.raises(FileNotFoundError, match="clip_weights=.*nope.bin: file not found"):
        clip_weights_or_error(str(tmp_path / "nope.bin"), "ViT-B-32")
    with pytest.raises(FileNotFoundError, match="clip_weights"):
        ClipScorer(str(tmp_path / "nope.bin"), "ViT-B-32")
