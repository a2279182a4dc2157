"""The T = 1 image objectives (next_token, masked): the data path into a falling loss, the mask
rule, and their samplers against uncached one-pass references."""

import io

import numpy as np
import pytest
import torch

from unified_fixtures import make_assets, tiny_model
from unimodal.config import ConfigError
from unimodal.data.data_config import DataConfig, SourceConfig
from unimodal.data.mixture import check_against_vocabulary
from unimodal.data.sample_documents import SampleDocuments
from unimodal.data.sequences import pack_documents
from unimodal.model.attention_mask import dense_mask
from unimodal.model.objectives import build_objective
from unimodal.model.sampling import ImageSamplingConfig, sample_codes
from unimodal.model.sampling_rules import (guidance_scale, guide, gumbel_sample, top_k_filter,
                                           top_p_filter)
from unimodal.model.vocabulary import image_prompt

LATENT_DIM = 8


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A T = 1 image tokenizer (plain VQ, K = 64, 8x8 codes) and its vocabulary."""
    return make_assets(tmp_path_factory.mktemp("assets_t1"), code_maps=1)


def _model(assets, objective):
    _, tok_dir, tok, vocab, vocab_cfg = assets
    return tiny_model(vocab, vocab_cfg, tok, tok_dir, image_objective=objective)


def _raw(codes: torch.Tensor, seed: int, class_id: int) -> dict:
    buf = io.BytesIO()
    np.save(buf, codes.numpy().astype(np.uint16))
    return {"codes.npy": buf.getvalue(), "seed.txt": str(seed).encode(),
            "cls": str(class_id).encode()}


def _images(vocab, n=4):
    """n fixed class images whose codes follow a simple pattern (learnable in a few steps)."""
    h, w = vocab.grid
    grid = torch.arange(h)[:, None] + torch.arange(w)[None] * 3
    return [((grid * (c + 1) + 5 * c) % vocab.codebook_size)[None] for c in range(n)]


def _batch(vocab, objective, rng_seed=0, seq_len=300):
    """Raw class samples -> SampleDocuments (the objective's layout) -> pack_documents."""
    build = SampleDocuments("class_images", vocab, LATENT_DIM, seq_len, blocks_per_image=2,
                            cfg_drop=0.0, caption_loss=False, image_objective=objective)
    rng = np.random.default_rng(rng_seed)
    docs = [doc for c, codes in enumerate(_images(vocab)) for doc in build(_raw(codes, c, c), rng)]
    return pack_documents(docs, seq_len=seq_len, pad_id=vocab.pad_id)


def _train(model, vocab, objective, steps=25, fresh_layouts=False):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for step in range(steps):
        out = model(_batch(vocab, objective, rng_seed=step if fresh_layouts else 0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["image_loss"]))
    return losses


def _mask_rows(batch, objective_cls):
    dense = dense_mask(batch["doc_ids"], batch["block_ids"], objective_cls.image_rule)[:, 0]
    mod = objective_cls(batch["_vocab"], LATENT_DIM).mask_mod(batch["doc_ids"], batch["block_ids"])
    idx = torch.arange(batch["doc_ids"].shape[1])
    for row in range(dense.shape[0]):
        assert torch.equal(dense[row], mod(torch.tensor(row), torch.tensor(0), idx[:, None],
                                           idx[None, :]))
    return dense


# ------------------------------------------------------------------------------------ shared
@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_a_multi_step_tokenizer_is_refused_naming_steps(tmp_path_factory, objective):
    vocab = make_assets(tmp_path_factory.mktemp("assets_t4"))[3]   # T = 4
    with pytest.raises(ConfigError, match=rf"image_objective='{objective}'.*code_maps=4"):
        build_objective(objective, vocab, LATENT_DIM)


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_data_checks_refuse_step_weights_and_ignore_rdpm_blocks(assets, objective):
    vocab = assets[3]
    sources = [SourceConfig(name="c", kind="class_images", shards="x.tar")]
    check_against_vocabulary(DataConfig(sources=sources, seq_len=80, blocks_per_image=2), vocab,
                             LATENT_DIM, image_objective=objective)
    with pytest.raises(ConfigError, match=r"data\.step_weights=\[1\.0\]"):
        check_against_vocabulary(DataConfig(sources=sources, seq_len=80, step_weights=[1.0]),
                                 vocab, LATENT_DIM, image_objective=objective)
    with pytest.raises(ConfigError, match=r"data\.seq_len=40"):
        check_against_vocabulary(DataConfig(sources=sources, seq_len=40), vocab, LATENT_DIM,
                                 image_objective=objective)


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_loss_falls_through_the_data_path(assets, objective):
    vocab = assets[3]
    model = _model(assets, objective).train()
    losses = _train(model, vocab, objective, fresh_layouts=objective == "masked")
    assert losses[0] > 3.5                      # about ln 64 at the start
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_sampler_returns_valid_codes(assets, objective):
    vocab = assets[3]
    model = _model(assets, objective).eval()
    prompts = [image_prompt(vocab, "a red circle"), image_prompt(vocab, class_id=3)]
    cfg = ImageSamplingConfig(cfg_scale=2.0, temperature=1.0, top_k=20, top_p=0.9, seed=4)
    codes = sample_codes(model, prompts, cfg)
    assert codes.shape == (2, 1, *vocab.grid) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < vocab.codebook_size
    with pytest.raises(ValueError, match="prefix"):
        sample_codes(model, prompts, cfg, prefix=codes)


# -------------------------------------------------------------------------------- next_token
def test_next_token_document_predicts_each_code_from_the_ones_before(assets):
    vocab = assets[3]
    codes = _images(vocab)[1]
    batch = _batch(vocab, "next_token")
    row_targets, blocks = batch["targets"][0], batch["block_ids"][0]
    first = blocks == 0
    flat = codes.flatten() + vocab.code_offset
    assert torch.equal(row_targets[first], _images(vocab)[0].flatten() + vocab.code_offset)
    inputs = batch["input_ids"][0][blocks == 1]
    assert inputs[0] == vocab.boi_id and torch.equal(inputs[1:], flat[:-1])
    assert torch.equal(row_targets[blocks == 1], flat)
    assert batch["block_codes"].shape == (4, 1, *vocab.grid)


def _image_mask(vocab, name: str, objective):
    """The dense mask of the first packed row, its block and document ids, and the positions of
    its first image (block id 1)."""
    batch = {**_batch(vocab, name), "_vocab": vocab}
    dense = _mask_rows(batch, objective)[0]
    blocks, docs = batch["block_ids"][0], batch["doc_ids"][0]
    return dense, blocks, docs, (blocks == 1).nonzero()[:, 0]


def test_next_token_mask_is_causal_within_the_image(assets):
    from unimodal.model.objectives.next_token import NextTokenObjective

    dense, blocks, docs, image = _image_mask(assets[3], "next_token", NextTokenObjective)
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


REFERENCE_SAMPLING = {  # the samplers against their references: greedy; guidance, top-k, top-p
    "greedy": dict(cfg_scale=0.0, temperature=0.0),
    "cfg_topk_topp": dict(cfg_scale=3.0, cfg_schedule="linear", temperature=1.0, top_k=12,
                          top_p=0.8),
}


def _sampled_and_reference(assets, objective, cfg, reference, init_input=False):
    """The codes `sample_codes` draws for two fixed prompts and seeds, and those `reference`
    draws for the same, from a model with sharp random weights (positions and the cache
    matter); `init_input` also draws the image input's weights."""
    vocab = assets[3]
    model = _model(assets, objective).eval()
    torch.manual_seed(3)
    model.backbone.init_weights(std=0.3)
    if init_input:
        model.image_input.init_weights(std=0.3)
    prompts = [image_prompt(vocab, "a red circle above a square"), image_prompt(vocab, class_id=2)]
    seeds = [17, 4]
    sampled = sample_codes(model, prompts, cfg, seeds)
    with torch.no_grad():
        return sampled, reference(model, prompts, cfg, seeds)


@pytest.mark.parametrize("setting", REFERENCE_SAMPLING)
def test_next_token_cached_sampling_equals_the_uncached_reference(assets, setting):
    cfg = ImageSamplingConfig(**REFERENCE_SAMPLING[setting])
    cached, reference = _sampled_and_reference(assets, "next_token", cfg, _uncached_next_token)
    assert torch.equal(cached, reference)
    assert len(set(cached.flatten().tolist())) > 1     # not a degenerate constant image


# ------------------------------------------------------------------------------------ masked
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
    codes = _images(vocab)[2]
    doc = objective.image_document(image_prompt(vocab, class_id=2), False, codes, 0, layouts[0])
    targets = torch.tensor(doc.targets[-hw:])
    masked = torch.from_numpy(layouts[0].masked)
    assert torch.equal(targets[masked], codes.flatten()[masked] + vocab.code_offset)
    assert (targets[~masked] == -100).all() and (torch.tensor(doc.targets[:-hw]) == -100).all()
    batch = _batch(vocab, "masked")
    assert batch["block_masked"].shape == (4, *vocab.grid)
    assert int((batch["targets"] >= 0).sum()) == int(batch["block_masked"].sum())


def test_masked_mask_is_bidirectional_within_the_image(assets):
    from unimodal.model.objectives.masked import MaskedObjective

    dense, blocks, docs, image = _image_mask(assets[3], "masked", MaskedObjective)
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
    sampled, reference = _sampled_and_reference(assets, "masked", cfg, _one_pass_masked,
                                                init_input=True)
    assert torch.equal(sampled, reference)
    assert len(set(sampled.flatten().tolist())) > 1


def test_masked_sampling_passes_matter(assets):
    """S > 1 passes condition later codes on earlier ones: the result differs from one pass."""
    vocab = assets[3]
    model = _model(assets, "masked").eval()
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
    model = _model(assets, "masked").eval()
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


def test_eval_settings_record_the_masked_sampler_options_so_a_resume_cannot_mix_them(tmp_path):
    from types import SimpleNamespace

    from unimodal.eval_sampling import SamplingRunConfig, check_resume, sampling_record, write_settings

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"weights")
    tok = SimpleNamespace(code_maps=1, grid=(8, 8), image_size=32)

    def record(objective: str, choice: float) -> dict:
        run = SamplingRunConfig(checkpoint=str(tmp_path / "ckpt"),
                                sampling=ImageSamplingConfig(mask_choice_temperature=choice))
        return sampling_record(run, SimpleNamespace(tok_cfg=tok, objective=SimpleNamespace(name=objective)))

    assert "mask_choice_temperature" not in record("rdpm", 0.0)    # rdpm's records stay as they were
    write_settings(tmp_path / "out", record("masked", 0.0))
    assert not check_resume(tmp_path / "out", record("masked", 0.0))
    with pytest.raises(ValueError, match="mask_choice_temperature: 0.0 -> 4.5"):
        check_resume(tmp_path / "out", record("masked", 4.5))


def test_eval_settings_record_top_p_when_it_filters(tmp_path):
    from types import SimpleNamespace

    from unimodal.eval_sampling import SamplingRunConfig, check_resume, sampling_record, write_settings

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"weights")
    model = SimpleNamespace(tok_cfg=SimpleNamespace(code_maps=1, grid=(8, 8), image_size=32),
                            objective=SimpleNamespace(name="next_token"))

    def record(top_p: float) -> dict:
        run = SamplingRunConfig(checkpoint=str(tmp_path / "ckpt"),
                                sampling=ImageSamplingConfig(top_p=top_p))
        return sampling_record(run, model)

    assert "top_p" not in record(1.0)   # the default keeps older records valid
    write_settings(tmp_path / "out", record(0.9))
    with pytest.raises(ValueError, match="top_p: 0.9 -> None"):
        check_resume(tmp_path / "out", record(1.0))
