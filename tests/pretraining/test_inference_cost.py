"""Inference FLOPs per image: the hand count in unimodal/pretraining/inference_cost.py against
torch's FlopCounterMode while each objective's real sampler draws one image, and the timer."""

import math

import pytest
from torch.utils.flop_counter import FlopCounterMode

import unimodal.model.llama as llama
from unified_fixtures import make_assets, tiny_model
from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.model.vocabulary import image_prompt
from unimodal.pretraining.inference_cost import (inference_attention_flops, inference_flops,
                                                 inference_matmul_flops, ms_per_image,
                                                 sampling_steps)

CASES = [("rdpm", "shared", 4), ("rdpm", "latent", 4), ("next_token", "shared", 1),
         ("masked", "shared", 1)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return {code_maps: make_assets(tmp_path_factory.mktemp(f"assets_t{code_maps}"), code_maps=code_maps)
            for code_maps in (1, 4)}


def _math_attention(q, k, v, attn_mask=None, enable_gqa=False):
    """SDPA written as two matmuls, so FlopCounterMode sees the attention (the CPU kernel hides it).
    Keys that no query may see are left out: the static KV cache's slots not yet written, which
    the hand count (the keys cached so far) does not charge either."""
    if attn_mask is not None:
        seen = attn_mask.reshape(-1, attn_mask.shape[-1]).any(0)
        k, v, attn_mask = k[:, :, seen], v[:, :, seen], attn_mask[..., seen]
    k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("objective,code_head,steps", CASES)
@pytest.mark.parametrize("cfg_scale", [0.0, 2.0])
def test_inference_flops_equal_torchs_flop_counter(assets, monkeypatch, objective, code_head,
                                                   steps, cfg_scale):
    """One image sampled with the objective's own sampler: the formula is within 1% of
    FlopCounterMode (matmuls and the attention written out), with and without guidance."""
    _, tok_dir, tok, vocab, vocab_cfg = assets[steps]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, code_head=code_head,
                       image_objective=objective).eval()
    cfg = ImageSamplingConfig(cfg_scale=cfg_scale, mask_steps=3)
    prompt = image_prompt(vocab, "a red circle above a blue square")
    monkeypatch.setattr(llama.F, "scaled_dot_product_attention", _math_attention)
    with FlopCounterMode(display=False) as counter:
        codes = model.objective.sample(model, [prompt], cfg, [0])
    assert codes.shape == (1, vocab.code_maps, *vocab.grid)
    counted = counter.get_total_flops()
    hand = inference_flops(model, len(prompt), cfg=cfg)
    assert hand == pytest.approx(counted, rel=0.01), (hand, counted)
    steps_used = sampling_steps(model, cfg)
    guided = cfg_scale != 0
    assert hand == (inference_matmul_flops(model, len(prompt), steps_used, guided)
                    + inference_attention_flops(model, len(prompt), steps_used, guided))


def test_inference_flops_grow_with_steps_as_each_sampler_does(assets):
    """rdpm and masked are linear in their passes; next_token's attention grows quadratically."""
    _, tok_dir, tok, vocab, vocab_cfg = assets[1]
    masked = tiny_model(vocab, vocab_cfg, tok, tok_dir, image_objective="masked")
    one, two, four = (inference_flops(masked, 10, s) for s in (1, 2, 4))
    prompt = inference_flops(masked, 10, 0)
    assert two - one == pytest.approx(one - prompt) and four - prompt == pytest.approx(4 * (one - prompt))
    nxt = tiny_model(vocab, vocab_cfg, tok, tok_dir, image_objective="next_token")
    a, b, c = (inference_attention_flops(nxt, 10, s) for s in (2, 3, 4))
    assert c - b > b - a > 0


def test_ms_per_image_is_positive_and_checks_its_arguments(assets):
    _, tok_dir, tok, vocab, vocab_cfg = assets[1]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, image_objective="masked").eval()
    cfg = ImageSamplingConfig(mask_steps=2)
    ms = ms_per_image(model, tok, ["a red circle"], cfg, batch_size=2, repeats=1, warmup=1)
    assert 0 < ms < 60_000
    with pytest.raises(ValueError, match="batch_size"):
        ms_per_image(model, tok, ["a red circle"], cfg, batch_size=0)
