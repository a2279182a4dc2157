"""Guidance direction and schedule inside the sampler (unimodal/model/sampling_rules.py: `guide`,
`guidance_scale`): checks aimed at plausible one-line bugs that earlier tests let through (issue 11,
part 7; its other guards are tests/pretraining/test_ema.py, tests/pretraining/test_config.py and
the precision/recall test in tests/metrics/test_generation.py); and the static KV cache of the
token-by-token samplers against a full forward pass."""

import pytest
import torch

import unimodal.model.objectives.rdpm as rdpm
import unimodal.model.sampling as sampling
from unified_fixtures import causal_mask, make_assets, tiny_model
from unimodal.model.vocabulary import image_prompt
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.sampling_rules import (StaticKVCache, any_padding, block_geometry, block_rope,
                                           run_prompts)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guards")
    _, tok_dir, tok, vocab, vocab_cfg = make_assets(folder)
    return tiny_model(vocab, vocab_cfg, tok, tok_dir).eval()


def _fixed_block_logits(cond_row: list[float], uncond_row: list[float]):
    """A stand-in for the network: every position gets these code logits (cond rows first)."""
    def block_logits(model, cache, valid, next_pos, latent_prev, noise_t, t, geometry=None):
        rows, _, h, w = latent_prev.shape
        k = model.vocab.codebook_size
        logits = torch.full((rows, h * w, k), -10.0)
        half = rows // 2
        logits[:half, :, :len(cond_row)] = torch.tensor(cond_row)
        logits[half:, :, :len(uncond_row)] = torch.tensor(uncond_row)
        return logits
    return block_logits


def test_guidance_pushes_towards_the_prompt(model, monkeypatch):
    # cond prefers code 1 a little, uncond prefers code 2 a lot: guidance must pick code 1,
    # cond + 4 (cond - uncond) = (3.0, -1.5); the swapped formula would pick code 2.
    monkeypatch.setattr(rdpm, "block_logits", _fixed_block_logits([0, 1.0, 0.5], [0, 0.5, 1.0]))
    prompt = image_prompt(model.vocab, "a red circle")
    codes = sample_codes(model, [prompt], ImageSamplingConfig(cfg_scale=4, cfg_schedule="constant",
                                                              temperature=0), seeds=[0])
    assert (codes == 1).all()


def test_linear_guidance_already_acts_at_the_first_step(model, monkeypatch):
    # At t = 1 of T = 4, lambda_1 = 4 * 1/4 = 1: code 1 scores 1 + 1 * 1 = 2 > 1.2. With the
    # schedule off by one (lambda_1 = 0) code 2 would win the first step.
    monkeypatch.setattr(rdpm, "block_logits", _fixed_block_logits([0, 1.0, 1.2], [0, 0.0, 1.2]))
    prompt = image_prompt(model.vocab, "a red circle")
    codes = sample_codes(model, [prompt], ImageSamplingConfig(cfg_scale=4, cfg_schedule="linear",
                                                              temperature=0), seeds=[0])
    assert (codes[:, 0] == 1).all()
    assert sampling.guidance_scale(4.0, "linear", 1, 4) == 1.0
    assert sampling.guidance_scale(4.0, "linear", 4, 4) == 4.0


def test_block_geometry_from_prompt_lengths_equals_the_one_read_from_the_device(model):
    # The image samplers pass any_padding(prompts) so that they need not read `valid` back from
    # the GPU: it must give the mask that `valid` gives, None when nothing is padded (attention
    # then runs unmasked).
    vocab = model.vocab
    same = [image_prompt(vocab, class_id=1), image_prompt(vocab, class_id=2), image_prompt(vocab)]
    mixed = [image_prompt(vocab, "a red circle above a blue square"), image_prompt(vocab, class_id=2)]
    for prompts, padded in ((same, False), (mixed, True)):
        assert any_padding(prompts) is padded
        _, valid, next_pos, _ = run_prompts(model, prompts)
        positions, mask, _ = block_geometry(valid, next_pos, 4, any_padding(prompts))
        read_positions, read_mask, _ = block_geometry(valid, next_pos, 4)
        assert torch.equal(positions, read_positions)
        assert (mask is None) == (read_mask is None) == (not padded)
        if padded:
            assert torch.equal(mask, read_mask)
            assert not mask[1, 0, 0, 0]    # the class row's left padding is invisible
            assert mask[..., -4:].all()    # every row sees its whole block


def test_block_passes_with_the_rope_tables_computed_once_equal_the_plain_pass(model):
    # The samplers compute the block positions' RoPE tables once per batch (block_geometry's
    # `rope`) and hand them to every pass: the hidden states must be those of a pass that derives
    # them from the positions, bit for bit, and the tables must really be read (wrong tables
    # change the output).
    vocab = model.vocab
    prompts = [image_prompt(vocab, "a red circle above a blue square"), image_prompt(vocab, class_id=2)]
    with torch.no_grad():
        cache, valid, next_pos, _ = run_prompts(model, prompts)
        geometry = block_geometry(valid, next_pos, 4, any_padding(prompts), rope=block_rope(model))
        x = torch.randn(2, 4, model.backbone.config.hidden_size, generator=torch.Generator().manual_seed(0))
        plain, _ = model.backbone(x, geometry.positions, geometry.mask, kv_prefix=cache)
        tabled, _ = model.backbone(x, None, geometry.mask, kv_prefix=cache, rope=geometry.rope)
        shifted, _ = model.backbone(x, None, geometry.mask, kv_prefix=cache,
                                    rope=model.backbone.rope(geometry.positions + 1, x.dtype))
    assert torch.equal(plain, tabled)
    assert not torch.allclose(plain, shifted)


def test_static_kv_cache_steps_equal_a_full_forward_per_row(model):
    # Two prompts of different lengths (so the shorter is left-padded), then three fed tokens each:
    # every step's hidden state, read through the static cache and its key mask, must equal a full
    # causal forward of that row's prompt + tokens so far. A wrong slot, an off-by-one mask or a
    # padded key left visible would change it.
    vocab = model.vocab
    prompts = [[vocab.bos_id, *vocab.encode_text("a red circle above a blue square")],
               [vocab.bos_id, *vocab.encode_text("two")]]
    fed = torch.tensor([[5, 9, 13], [7, 7, 2]])
    with torch.no_grad():
        prompt_cache, valid, next_pos, _ = run_prompts(model, prompts)
        cache = StaticKVCache(prompt_cache, valid, slots=fed.shape[1])
        for step in range(fed.shape[1]):
            x = model.backbone.embed(fed[:, step:step + 1])
            hidden, new_kv = model.backbone(x, next_pos[:, None], cache.key_mask(step),
                                            kv_prefix=cache.prefix)
            cache.write(step, new_kv)
            next_pos = next_pos + 1
            for row, prompt in enumerate(prompts):
                ids = torch.tensor([prompt + fed[row, :step + 1].tolist()])
                full, _ = model.backbone(model.backbone.embed(ids), torch.arange(ids.shape[1])[None],
                                         causal_mask(ids))
                torch.testing.assert_close(hidden[row, 0], full[0, -1], rtol=1e-4, atol=1e-5)
