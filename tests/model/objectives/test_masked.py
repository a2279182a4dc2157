"""The masked objective (MaskGIT-style): documents that score only masked positions on a cosine
schedule, a bidirectional mask inside the image, one-pass sampling against one forward, and the
choice-temperature option."""

import numpy as np
import pytest
import torch

from token_objective_fixtures import (LATENT_DIM, REFERENCE_SAMPLING, class_images, image_mask,
                                      model_for, packed_batch, sampled_and_reference)
from unimodal.data.sequences import pack_documents
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.sampling_rules import (guidance_scale, guide, gumbel_sample, top_k_filter,
                                           top_p_filter)
from unimodal.model.vocabulary import image_prompt


def test_masked_documents_score_only_masked_positions_on_a_cosine_schedule(assets):
    from unimodal.model.objectives.masked import MaskedObjective

    vocab = assets[3]
    objective = MaskedObjective(vocab, LATENT_DIM)
    hw = objective.hw
    rng = np.random.default_rng(0)
    layouts = [objective.draw_layout(rng) for _ in range(400)]
    counts = np.array([layout.masked.sum() for layout in layouts])
    ratios = np.array([layout.ratio for layout in layouts])
    assert counts.min() >= 1 and counts.max() <= hw
    assert np.array_equal(counts, np.clip(np.ceil(ratios * hw), 1, hw).astype(int))
    assert abs(ratios.mean() - 2 / np.pi) < 0.05              # E[cos(pi/2 u)] = 2/pi
    codes = class_images(vocab)[2]
    doc = objective.image_document(image_prompt(vocab, class_id=2), False, codes, 0, layouts[0])
    targets = torch.tensor(doc.targets[-hw:])
    masked = torch.from_numpy(layouts[0].masked)
    assert torch.equal(targets[masked], codes.flatten()[masked] + vocab.code_offset)
    assert (targets[~masked] == -100).all() and (torch.tensor(doc.targets[:-hw]) == -100).all()
    batch = packed_batch(vocab, "masked")
    assert batch["block_masked"].shape == (4, *vocab.grid)
    assert int((batch["targets"] >= 0).sum()) == int(batch["block_masked"].sum())


def test_masked_mask_is_bidirectional_within_the_image(assets):
    from unimodal.model.objectives.masked import MaskedObjective

    dense, blocks, docs, image = image_mask(assets[3], "masked", MaskedObjective)
    assert dense[image][:, image].all()                            # the whole image both ways
    prompt = (docs == docs[image[0]]) & (blocks < 0)
    assert dense[image][:, prompt].all()
    assert not dense[image][:, blocks == 0].any()
    assert not dense[prompt][:, image].any()                       # the prompt never sees it


def test_masked_schedule_leaves_nothing_masked_after_the_last_pass():
    from unimodal.model.objectives.masked import still_masked

    left = [still_masked(64, s, 12) for s in range(13)]
    assert left[0] == 64 and left[-1] == 0 and left == sorted(left, reverse=True)


def _one_pass_masked(model, prompts, cfg, seeds):
    """Reference for S = 1: one uncached forward of each full sequence (prompt + all [MASK])."""
    from unimodal.model.objectives.masked import MaskLayout, masked_document
    from unimodal.model.attention_mask import build_attention_mask

    vocab = model.vocab
    hw, b = vocab.grid[0] * vocab.grid[1], len(prompts)
    guided = cfg.cfg_scale != 0
    rows = prompts + ([image_prompt(vocab)] * b if guided else [])
    blank = torch.zeros((1, *vocab.grid), dtype=torch.long)
    docs = [masked_document(vocab, p, blank, MaskLayout(1.0, np.ones(hw, bool)), False)
            for p in rows]
    batch = pack_documents(docs, seq_len=max(len(d) for d in docs), pad_id=vocab.pad_id)
    assert batch["input_ids"].shape[0] == len(rows)            # one sequence per row
    emb, _ = model.embed_sequence(batch)
    mask = build_attention_mask(batch["doc_ids"], batch["block_ids"], model.objective.image_rule)
    hidden, _ = model.backbone(emb, batch["position_ids"], mask)
    logits = model.code_logits(hidden[batch["block_ids"] >= 0]).view(len(rows), hw, -1)
    if guided:
        scale = guidance_scale(cfg.cfg_scale, cfg.cfg_schedule, 1, 1)
        logits = guide(logits[:b], logits[b:], scale)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    codes = gumbel_sample(top_p_filter(top_k_filter(logits, cfg.top_k), cfg.top_p),
                          cfg.temperature, gens)
    return codes.view(b, 1, *vocab.grid)


@pytest.mark.parametrize("setting", REFERENCE_SAMPLING)
def test_masked_one_pass_sampling_equals_one_forward(assets, setting):
    cfg = ImageSamplingConfig(**REFERENCE_SAMPLING[setting], mask_steps=1)
    sampled, reference = sampled_and_reference(assets, "masked", cfg, _one_pass_masked,
                                                init_input=True)
    assert torch.equal(sampled, reference)
    assert len(set(sampled.flatten().tolist())) > 1


def test_masked_sampling_passes_matter(assets):
    """S > 1 passes condition later codes on earlier ones: the result differs from one pass."""
    vocab = assets[3]
    model = model_for(assets, "masked").eval()
    torch.manual_seed(3)
    model.backbone.init_weights(std=0.3)
    model.image_input.init_weights(std=0.3)
    prompts = [image_prompt(vocab, class_id=1)]
    greedy = dict(cfg_scale=0, temperature=0)
    one = sample_codes(model, prompts, ImageSamplingConfig(**greedy, mask_steps=1))
    many = sample_codes(model, prompts, ImageSamplingConfig(**greedy))
    assert not torch.equal(one, many)


# Codes of the masked sampler before the choice-temperature option (main at dbbb0fc), for the
# model of _sharp_masked_model, prompts [caption, class 2], seeds [17, 4], CFG 2, tau 1, top-k 12,
# S = 4: choice temperature 0 must keep them exactly.
_CODES_BEFORE_CHOICE_NOISE = [
    [43, 27, 43, 30, 8, 18, 46, 21, 58, 48, 25, 6, 3, 11, 25, 61, 62, 17, 44, 54, 5, 21, 35, 14,
     44, 39, 33, 44, 34, 48, 44, 25, 27, 52, 1, 17, 41, 11, 43, 11, 44, 60, 42, 27, 52, 14, 0, 25,
     46, 29, 12, 10, 63, 33, 22, 31, 32, 60, 25, 25, 10, 44, 62, 25],
    [28, 33, 16, 34, 23, 21, 19, 21, 21, 25, 44, 56, 12, 23, 41, 25, 21, 25, 11, 25, 42, 25, 15, 38,
     25, 59, 28, 56, 61, 25, 44, 23, 25, 22, 2, 60, 25, 2, 33, 25, 43, 62, 40, 26, 46, 40, 25, 11,
     25, 25, 62, 40, 30, 11, 60, 5, 25, 2, 33, 25, 2, 32, 32, 25]]


def _sharp_masked_model(assets):
    model = model_for(assets, "masked").eval()
    torch.manual_seed(3)
    model.backbone.init_weights(std=0.3)
    model.image_input.init_weights(std=0.3)
    return model


def test_masked_choice_temperature_zero_keeps_the_codes_of_before(assets):
    vocab = assets[3]
    model = _sharp_masked_model(assets)
    prompts = [image_prompt(vocab, "a red circle above a square"), image_prompt(vocab, class_id=2)]
    base = dict(cfg_scale=2.0, temperature=1.0, top_k=12, mask_steps=4)
    for cfg in (ImageSamplingConfig(**base), ImageSamplingConfig(**base, mask_choice_temperature=0)):
        codes = sample_codes(model, prompts, cfg, [17, 4])
        assert codes.flatten(1).tolist() == _CODES_BEFORE_CHOICE_NOISE


def test_masked_choice_noise_is_seeded_per_image_and_changes_which_codes_are_kept(assets):
    vocab = assets[3]
    model = _sharp_masked_model(assets)
    prompts = [image_prompt(vocab, "a red circle above a square"), image_prompt(vocab, class_id=2)]
    # Greedy codes: with c = 0 nothing is random, so any change below is the choice noise's.
    greedy = dict(cfg_scale=2.0, temperature=0.0, mask_steps=4)
    noisy = ImageSamplingConfig(**greedy, mask_choice_temperature=4.5, seed=5)
    batch = sample_codes(model, prompts, noisy)                      # image i: seed 5 + i
    assert batch.shape == (2, 1, *vocab.grid) and batch.dtype == torch.long
    assert 0 <= int(batch.min()) and int(batch.max()) < vocab.codebook_size
    assert torch.equal(batch, sample_codes(model, prompts, noisy))  # deterministic for a seed
    for i, prompt in enumerate(prompts):                             # a batch = one at a time
        assert torch.equal(batch[i:i + 1], sample_codes(model, [prompt], noisy, [5 + i]))
    plain = sample_codes(model, prompts, ImageSamplingConfig(**greedy), [0, 0])
    assert any(not torch.equal(sample_codes(model, prompts, noisy, [s, s]), plain)
               for s in range(4))
    # With S = 1 the only pass is the last, where the annealed noise is 0: nothing changes.
    one_pass = dict(greedy, mask_steps=1)
    assert torch.equal(sample_codes(model, prompts, ImageSamplingConfig(**one_pass)),
                       sample_codes(model, prompts, ImageSamplingConfig(
                           **one_pass, mask_choice_temperature=4.5)))


def test_masked_choice_temperature_anneals_linearly_to_zero_at_the_last_pass():
    from unimodal.model.objectives.masked import choice_temperature_at

    steps = 12
    schedule = [choice_temperature_at(4.5, s, steps) for s in range(1, steps + 1)]
    assert schedule[0] == pytest.approx(4.5 * (1 - 1 / steps)) and schedule[-1] == 0
    assert np.allclose(np.diff(schedule), -4.5 / steps)
    assert all(choice_temperature_at(0.0, s, steps) == 0 for s in range(1, steps + 1))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5])
def test_a_bad_choice_temperature_is_refused_naming_the_key(value):
    with pytest.raises(ValueError, match="sampling.mask_choice_temperature="):
        ImageSamplingConfig(mask_choice_temperature=value).validate()

