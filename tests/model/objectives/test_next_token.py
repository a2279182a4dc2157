"""The next_token objective: each code predicted from the ones before, a causal mask inside the
image, and the KV-cached sampler against an uncached full-forward reference."""

import pytest
import torch

from token_objective_fixtures import (REFERENCE_SAMPLING, class_images, image_mask, packed_batch,
                                      sampled_and_reference)
from unimodal.model.sampling import ImageSamplingConfig
from unimodal.model.sampling_rules import (guidance_scale, guide, gumbel_sample, top_k_filter,
                                           top_p_filter)
from unimodal.model.vocabulary import image_prompt


def test_next_token_document_predicts_each_code_from_the_ones_before(assets):
    vocab = assets[3]
    codes = class_images(vocab)[1]
    batch = packed_batch(vocab, "next_token")
    row_targets, blocks = batch["targets"][0], batch["block_ids"][0]
    first = blocks == 0
    flat = codes.flatten() + vocab.code_offset
    assert torch.equal(row_targets[first], class_images(vocab)[0].flatten() + vocab.code_offset)
    inputs = batch["input_ids"][0][blocks == 1]
    assert inputs[0] == vocab.boi_id and torch.equal(inputs[1:], flat[:-1])
    assert torch.equal(row_targets[blocks == 1], flat)
    assert batch["block_codes"].shape == (4, 1, *vocab.grid)


def test_next_token_mask_is_causal_within_the_image(assets):
    from unimodal.model.objectives.next_token import NextTokenObjective

    dense, blocks, docs, image = image_mask(assets[3], "next_token", NextTokenObjective)
    sub = dense[image][:, image]
    assert torch.equal(sub, torch.ones_like(sub).tril())           # causal inside the image
    prompt = (docs == docs[image[0]]) & (blocks < 0)
    assert dense[image][:, prompt].all()                           # every code sees its prompt
    assert not dense[image][:, blocks == 0].any()                  # never the image before


def _uncached_next_token(model, prompts, cfg, seeds):
    """Reference: a full forward of every sequence (no KV cache, no padding) for each code."""
    vocab = model.vocab
    hw, b = vocab.grid[0] * vocab.grid[1], len(prompts)
    guided = cfg.cfg_scale != 0
    seqs = [list(p) for p in prompts + ([image_prompt(vocab)] * b if guided else [])]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    codes = []
    for i in range(hw):
        last = []
        for seq in seqs:
            length = len(seq)
            causal = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
            hidden, _ = model.backbone(model.backbone.embed(torch.tensor([seq])),
                                       torch.arange(length)[None], causal)
            last.append(hidden[0, -1])
        logits = model.code_logits(torch.stack(last))
        if guided:
            logits = guide(logits[:b], logits[b:],
                           guidance_scale(cfg.cfg_scale, cfg.cfg_schedule, i + 1, hw))
        code = gumbel_sample(top_p_filter(top_k_filter(logits, cfg.top_k), cfg.top_p),
                             cfg.temperature, gens)
        codes.append(code)
        for r, seq in enumerate(seqs):
            seq.append(int(code[r % b]) + vocab.code_offset)
    return torch.stack(codes, 1).view(b, 1, *vocab.grid)


@pytest.mark.parametrize("setting", REFERENCE_SAMPLING)
def test_next_token_cached_sampling_equals_the_uncached_reference(assets, setting):
    cfg = ImageSamplingConfig(**REFERENCE_SAMPLING[setting])
    cached, reference = sampled_and_reference(assets, "next_token", cfg, _uncached_next_token)
    assert torch.equal(cached, reference)
    assert len(set(cached.flatten().tolist())) > 1     # not a degenerate constant image

