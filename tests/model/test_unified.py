"""The unified model: the attention rule, the loss, the cached sampler (Llama parity is in
test_llama.py, checkpoints in test_export.py)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from unified_fixtures import host_waits, mixed_batch, tiny_model
from unimodal.data.sequences import pack_documents, text_document
from unimodal.model.document import IGNORE
from unimodal.model.vocabulary import image_prompt
from unimodal.model.attention_mask import build_attention_mask, dense_mask
from unimodal.model.objectives.rdpm import RDPMObjective, block_logits, image_document
from unimodal.model.export import load_unified, save_unified
from unimodal.model.sampling import (guide, guidance_scale, gumbel_sample,
                                     run_prompts, top_k_filter, top_p_filter)
from unimodal.model.sampling_rules import gumbel_argmax, uniform_draws

RULE = RDPMObjective.image_rule   # the default objective's part of the mask


@pytest.mark.gpu
@pytest.mark.parametrize("objective", ["rdpm", "next_token", "masked"])
def test_flex_attention_agrees_with_dense_sdpa_on_cuda(objective):
    from unimodal.model.llama import attend
    from unimodal.model.objectives import IMAGE_OBJECTIVES

    rule = IMAGE_OBJECTIVES[objective].image_rule

    torch.manual_seed(2)
    device = "cuda"
    doc_ids = torch.cat([torch.zeros(1, 300), torch.ones(1, 212)], 1).long().to(device)
    block_ids = torch.full((1, 512), -1, device=device)
    block_ids[0, 40:104], block_ids[0, 104:168], block_ids[0, 350:414] = 0, 1, 2
    q, k, v = (torch.randn(1, 4, 512, 32, device=device) for _ in range(3))
    sdpa = attend(q, k, v, build_attention_mask(doc_ids, block_ids, rule, use_flex=False))
    for compiled in (False, True):   # model.compile_block_mask
        flex = attend(q, k, v, build_attention_mask(doc_ids, block_ids, rule, use_flex=True,
                                                    compiled=compiled))
        torch.testing.assert_close(flex, sdpa, rtol=2e-3, atol=2e-3)
    # model.flex_kernel_options: other tiles, the same attention
    tiles = {"fwd_BLOCK_M": 64, "fwd_BLOCK_N": 32, "fwd_num_warps": 8}
    flex = attend(q, k, v, build_attention_mask(doc_ids, block_ids, rule, use_flex=True), tiles)
    torch.testing.assert_close(flex, sdpa, rtol=2e-3, atol=2e-3)


def test_flex_kernel_options_reach_every_layer(assets):
    from unimodal.model.unified import UnifiedModel, UnifiedModelConfig

    _, tok_dir, tok, vocab, vocab_cfg = assets
    assert tiny_model(vocab, vocab_cfg, tok, tok_dir).backbone.flex_kernel_options == {}
    cfg = UnifiedModelConfig(vocab=vocab_cfg, image_tokenizer=str(tok_dir),
                             flex_kernel_options={"fwd_num_warps": 8})
    model = UnifiedModel(cfg, vocab, tok.cfg)
    assert [layer.self_attn.flex_kernel_options for layer in model.backbone.model.layers] == \
        [{"fwd_num_warps": 8}] * cfg.backbone.num_layers


def test_compile_loss_sends_the_head_loss_through_the_compiled_function(model, assets,
                                                                       monkeypatch):
    # The switch's wiring (its numbers are the GPU test's below): same loss, via the compiled path.
    from unimodal.model import unified

    calls = []
    def spy(*args):
        calls.append(len(args[2]))
        return unified.head_cross_entropy_sums(*args)
    monkeypatch.setattr(unified, "compiled_head_cross_entropy_sums", lambda: spy)
    batch = mixed_batch(assets[3], torch.randint(0, 64, (4, 8, 8)))
    plain = model(batch)["loss"]
    monkeypatch.setattr(model.cfg, "compile_loss", True)
    assert model(batch)["loss"] == plain and calls == [1]


def test_loss_matches_a_hand_computation(model, assets):
    vocab = assets[3]
    torch.manual_seed(3)
    batch = mixed_batch(vocab, torch.randint(0, 64, (4, 8, 8)))
    out = model(batch)
    # Reference: full-vocabulary logits everywhere, then the text or code softmax per position.
    mask = dense_mask(batch["doc_ids"], batch["block_ids"], RULE)
    hidden, _ = model.backbone(model.embed_sequence(batch)[0], batch["position_ids"], mask)
    logits = F.linear(hidden, model.backbone.head_weight)[0]
    terms_text, terms_code = [], []
    for i in range(batch["targets"].shape[1]):
        target = int(batch["targets"][0, i])
        if target == IGNORE:
            continue
        if int(batch["block_ids"][0, i]) >= 0:
            code_logits = logits[i, model.code_slice]
            terms_code.append(-torch.log_softmax(code_logits, -1)[target - vocab.code_offset])
        else:
            terms_text.append(-torch.log_softmax(logits[i], -1)[target])
    assert len(terms_code) == 3 * 64 and out["image_tokens"] == 3 * 64
    expected = (torch.stack(terms_text).sum() + torch.stack(terms_code).sum()) / (
        len(terms_text) + len(terms_code))
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["image_loss"], torch.stack(terms_code).mean(), rtol=1e-5, atol=1e-5)
    # A random model's code loss is about log K: the softmax really is over the K codes only.
    assert abs(out["image_loss"].item() - math.log(64)) < 0.5


def test_a_further_modality_logs_its_own_loss(assets, tmp_path):
    """Codes of a modality after image (here audio, scored by the full head at non-block
    positions) are split from text by the vocabulary's ranges into audio_loss / audio_tokens."""
    from unimodal.model.modalities import CodeModalityConfig
    from unimodal.model.vocabulary import Vocabulary

    text_model, tok_dir, tok, _, vocab_cfg = assets
    vocab_cfg = replace(vocab_cfg, modalities=[CodeModalityConfig("audio", 16, 2, [12])])
    vocab = Vocabulary.build(vocab_cfg)
    audio = vocab.modality("audio")
    torch.manual_seed(3)
    codes = torch.randint(0, 64, (4, 8, 8))
    clip = (torch.randint(0, 16, (12,)) + audio.code_offset).tolist()
    spoken = text_document(vocab, vocab.encode_text("a low note") + [audio.begin_id, *clip, audio.end_id])
    img = image_document(vocab, image_prompt(vocab, "a red circle"), codes, 11, [1, 3], 8, True)
    batch = pack_documents([img, spoken], seq_len=300)
    for chunk in (0, 7):
        model = tiny_model(vocab, vocab_cfg, tok, tok_dir).eval()
        model.cfg.loss_chunk_tokens = chunk
        out = model(batch)
        mask = dense_mask(batch["doc_ids"], batch["block_ids"], RULE)
        hidden, _ = model.backbone(model.embed_sequence(batch)[0], batch["position_ids"], mask)
        terms = -torch.log_softmax(F.linear(hidden, model.backbone.head_weight)[0], -1)
        targets, text_pos = batch["targets"][0], (batch["block_ids"][0] < 0) & (batch["targets"][0] >= 0)
        is_audio = text_pos & audio.is_code(targets)
        picked = terms.gather(1, targets.clamp_min(0)[:, None])[:, 0]
        assert int(out["audio_tokens"]) == 12 and int(is_audio.sum()) == 12
        torch.testing.assert_close(out["audio_loss"], picked[is_audio].mean(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["text_loss"], picked[text_pos & ~is_audio].mean(), rtol=1e-5, atol=1e-5)
        assert int(out["text_tokens"]) == int((text_pos & ~is_audio).sum())
        n = out["text_tokens"] + out["audio_tokens"] + out["image_tokens"]
        total = (out["text_loss"] * out["text_tokens"] + out["audio_loss"] * 12
                 + out["image_loss"] * out["image_tokens"]) / n
        torch.testing.assert_close(out["loss"], total, rtol=1e-5, atol=1e-5)
    save_unified(model, tok, tmp_path / "ckpt")  # the registry travels with the checkpoint
    loaded, _ = load_unified(tmp_path / "ckpt")
    assert loaded.vocab.modalities == vocab.modalities
    torch.testing.assert_close(loaded(batch)["audio_loss"], out["audio_loss"])


def test_compile_block_mask_reaches_the_mask_builder(model, assets, monkeypatch):
    import unimodal.model.unified as unified

    real, seen = unified.build_attention_mask, []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("compiled"))
        return real(*args, **kwargs)

    monkeypatch.setattr(unified, "build_attention_mask", recording)
    batch = mixed_batch(assets[3], torch.randint(0, 64, (4, 8, 8)))
    for flag in (False, True):
        monkeypatch.setattr(model.cfg, "compile_block_mask", flag)
        model(batch)
    assert seen == [False, True]


def test_block_inputs_land_on_the_image_positions_of_every_row_with_their_gradients(model,
                                                                                    assets):
    # embed_sequence places the block inputs with index_copy (masked_scatter's backward waits for
    # the GPU); the boolean-mask placement is the reference, forward and backward, over two rows.
    vocab, codes = assets[3], torch.randint(0, 64, (4, 8, 8))
    docs = [image_document(vocab, image_prompt(vocab, "a red circle"), codes, 1, [1, 3], 8, True),
            text_document(vocab, vocab.encode_text("the blue square is on the left.")),
            image_document(vocab, image_prompt(vocab, class_id=5), codes, 2, [4], 8, False)]
    batch = pack_documents(docs, seq_len=200)
    assert batch["input_ids"].shape[0] == 2 and (batch["block_ids"][1] >= 0).any()
    weights = torch.randn(*batch["input_ids"].shape, model.backbone.config.hidden_size)
    params = [p for p in model.parameters() if p.requires_grad]

    def placed_by_mask(batch):
        text = model.backbone.embed(batch["input_ids"].clamp(0, vocab.size - 1))
        blocks, _ = model.image_input.embed(batch)
        return text.masked_scatter((batch["block_ids"] >= 0)[..., None], blocks.to(text.dtype))

    emb, reference = model.embed_sequence(batch)[0], placed_by_mask(batch)
    assert torch.equal(emb, reference)
    got = torch.autograd.grad((emb * weights).sum(), params, allow_unused=True)
    want = torch.autograd.grad((reference * weights).sum(), params, allow_unused=True)
    assert sum(g is not None for g in got) >= 2   # the text embedding and the block inputs
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w)


def test_a_training_step_makes_the_host_wait_for_nothing(model, assets, monkeypatch):
    # Forward and backward of a packed batch with images, with the head loss whole and in chunks
    # (model.loss_chunk_tokens): no op whose result size or value the host reads.
    # masked_scatter's backward (a masked_select) was one, once per micro-batch.
    batch = mixed_batch(assets[3], torch.randint(0, 64, (4, 8, 8)))
    assert host_waits(lambda: model(batch)["loss"].backward()) == []
    monkeypatch.setattr(model.cfg, "loss_chunk_tokens", 64)
    assert host_waits(lambda: model(batch)["loss"].backward()) == []
    # The recorder sees backward ops: the placement this replaced is caught.
    emb = torch.zeros(1, 6, 2, requires_grad=True)
    src = torch.ones(3, 2, requires_grad=True)
    mask = torch.tensor([[True, False, True, False, True, False]])
    waits = host_waits(lambda: emb.masked_scatter(mask[..., None], src).sum().backward())
    assert any("masked_scatter_backward" in op for op in waits), waits


def test_block_input_uses_previous_codes_and_noise(model, assets):
    tok = assets[2]
    codes = torch.randint(0, 64, (2, 4, 8, 8))
    steps = torch.tensor([1, 3])
    z_prev = model.image_input.latent_before(codes, steps)
    assert torch.equal(z_prev[0], torch.zeros_like(z_prev[0]))  # z'_0 = 0
    torch.testing.assert_close(z_prev[1], tok.quantizer.codes_to_latent(codes[1:, :2])[0])


def test_cached_block_logits_equal_full_forward(model, assets):
    vocab = assets[3]
    torch.manual_seed(4)
    codes = torch.randint(0, 64, (4, 8, 8))
    for t in (1, 3):
        prompt = image_prompt(vocab, "a green triangle below a red square")
        doc = image_document(vocab, prompt, codes, 21, [t], 8, True)
        batch = pack_documents([doc], seq_len=len(doc))
        mask = dense_mask(batch["doc_ids"], batch["block_ids"], RULE)
        hidden, _ = model.backbone(model.embed_sequence(batch)[0], batch["position_ids"], mask)
        full = model.code_logits(hidden[0, len(prompt):])
        # The sampler's way: prompt once, then the block against its cache (a shorter prompt
        # in the same batch forces left padding, which must not change anything).
        short = image_prompt(vocab, class_id=2)
        cache, valid, next_pos, _ = run_prompts(model, [prompt, short])
        latent = model.image_input.latent_before(codes[None].expand(2, -1, -1, -1),
                                                 torch.tensor([t, t]))
        noise = batch["block_noise"].expand(2, -1, -1, -1)
        cached = block_logits(model, cache, valid, next_pos, latent, noise, t)
        torch.testing.assert_close(cached[0], full, rtol=1e-4, atol=1e-4)


def test_guidance_and_gumbel_math():
    cond, uncond = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    torch.testing.assert_close(guide(cond, uncond, 3.0), torch.tensor([[5.0, -3.0, 1.0]]))
    assert guidance_scale(4.0, "linear", 5, 10) == 2.0 and guidance_scale(4.0, "constant", 1, 10) == 4.0
    logits = torch.randn(64, 50)
    assert torch.equal(gumbel_sample(logits, 0.0), logits.argmax(-1))
    assert torch.equal(gumbel_sample(logits, 1e-6, torch.Generator().manual_seed(0)),
                       logits.argmax(-1))
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    draws = gumbel_sample(probs.log().expand(40000, 4), 1.0, torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=4).float() / 40000
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    pair = gumbel_sample(logits[:2], 1.0, gens)
    alone = gumbel_sample(logits[1:2], 1.0, [torch.Generator().manual_seed(8)])
    assert pair[1] == alone[0]  # per-image generators: independent of the batch
    # The RDPM sampler draws into one reused buffer and turns the draws into codes inside its
    # (compiled) step: the same codes as drawing the noise with the logits.
    buffer = torch.full((2, 50), -1.0)
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    drawn = uniform_draws(buffer.shape, buffer.device, gens, out=buffer)
    assert drawn is buffer and 0 <= float(buffer.min()) and float(buffer.max()) < 1
    assert torch.equal(gumbel_argmax(logits[:2], 1.0, buffer),
                       gumbel_sample(logits[:2], 1.0, [torch.Generator().manual_seed(s) for s in (7, 8)]))
    assert torch.equal(gumbel_argmax(logits, 0.0, None), logits.argmax(-1))
    assert torch.isinf(top_k_filter(torch.tensor([[1.0, 3.0, 2.0]]), 2)[0, 0])
    kept = top_p_filter(torch.tensor([[0.0, 3.0, 2.9, -5.0]]), 0.8)
    assert torch.isinf(kept[0, [0, 3]]).all() and torch.isfinite(kept[0, [1, 2]]).all()


def test_mismatched_image_tokenizer_is_a_clear_error(assets):
    from unimodal.model.unified import UnifiedModel, UnifiedModelConfig
    from unified_fixtures import tiny_tokenizer_config

    vocab = assets[3]
    with pytest.raises(ValueError, match="codebook_size"):
        UnifiedModel(UnifiedModelConfig(), vocab, tiny_tokenizer_config(codebook_size=128))
    with pytest.raises(ValueError, match="vocabulary modality 'image': code_maps is 4 in the vocabulary, the tokenizer has 10"):
        UnifiedModel(UnifiedModelConfig(), vocab, tiny_tokenizer_config(code_maps=10))


def test_head_loss_pads_the_vocabulary_without_changing_loss_or_gradients():
    # head_cross_entropy_sums pads the head to a multiple of HEAD_ROWS_MULTIPLE rows for aligned
    # matmuls: the padded logits must not enter the softmax, and the gradients keep the head's shape.
    from unimodal.model.chunked_loss import HEAD_ROWS_MULTIPLE
    from unimodal.model.unified import head_cross_entropy_sums

    torch.manual_seed(0)
    vocab = 3 * HEAD_ROWS_MULTIPLE + 5
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    targets = torch.randint(0, vocab, (40,))
    groups = [torch.where(targets < 100, targets, IGNORE), torch.where(targets >= 100, targets, IGNORE)]
    sums = head_cross_entropy_sums(hidden, weight, groups)
    (sums[0] + 2 * sums[1]).backward()
    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    logits = h @ w.t()
    expected = [F.cross_entropy(logits, g, reduction="sum", ignore_index=IGNORE) for g in groups]
    (expected[0] + 2 * expected[1]).backward()
    torch.testing.assert_close(torch.stack(sums), torch.stack(expected))
    assert weight.grad.shape == (vocab, 16)
    torch.testing.assert_close(weight.grad, w.grad)
    torch.testing.assert_close(hidden.grad, h.grad)


@pytest.mark.gpu
def test_compiled_head_loss_equals_the_plain_one_on_cuda():
    # model.compile_loss: inductor fuses the float32 cast and log-softmax; the sums and the
    # gradients must stay the plain path's (two groups: text and a further modality's codes).
    from unimodal.model.unified import compiled_head_cross_entropy_sums, head_cross_entropy_sums

    torch.manual_seed(0)
    results = []
    for rows in (1000, 1234):  # another row count: the compiled function is dynamic
        hidden = torch.randn(rows, 256, device="cuda", dtype=torch.bfloat16)
        weight = (0.05 * torch.randn(5000, 256, device="cuda")).to(torch.bfloat16)
        targets = torch.randint(0, 5000, (rows,), device="cuda")
        groups = [torch.where(targets < 4000, targets, -100),
                  torch.where(targets >= 4000, targets, -100)]
        for fn in (head_cross_entropy_sums, compiled_head_cross_entropy_sums()):
            h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
            sums = fn(h, w, groups)
            (sums[0] + 2 * sums[1]).backward()
            results.append((torch.stack(sums).detach(), h.grad.float(), w.grad.float()))
    for (plain, compiled) in (results[0:2], results[2:4]):
        for a, b in zip(plain, compiled):
            torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-3)
