"""`model.loss_chunk_tokens` (unimodal/model/chunked_loss.py), checked for correctness on the CPU
(its GPU gain is measured by eval/bench_pretrain.py, never by tests): the chunked head +
cross-entropy gives the plain path's loss and gradients, for text-only, image-only and mixed
batches, every code head and objective, and keeps no (targets x vocabulary) tensor for the
backward. The plain path itself (index tensors, ignored rows: no device reads) equals the loss as
it was computed with boolean indexing of the target positions."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unified_fixtures import class_image_documents, make_assets, tiny_model
from unimodal.config import ConfigError
from unimodal.model.attention_mask import build_attention_mask
from unimodal.data.sequences import pack_documents, text_document
from unimodal.model.chunked_loss import chunked_cross_entropy_sum, linear_cross_entropy_sum

SEQ_LEN = 300
CASES = [("rdpm", "shared", 4), ("rdpm", "distance", 4), ("rdpm", "latent", 4),
         ("rdpm", "latent_shared", 4), ("next_token", "shared", 1), ("masked", "shared", 1)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return {code_maps: make_assets(tmp_path_factory.mktemp(f"assets_t{code_maps}"), code_maps=code_maps)
            for code_maps in (1, 4)}


def _batch(vocab, objective: str, kind: str) -> dict:
    """A packed batch of class images and text documents (`mixed`), its text targets dropped
    (`image`), or text documents alone (`text`)."""
    gen = torch.Generator().manual_seed(0)
    texts = [text_document(vocab, torch.randint(0, vocab.text_size - 2, (n,), generator=gen)
                           .tolist()) for n in (40, 75, 19)]
    if kind == "text":
        return pack_documents(texts, seq_len=SEQ_LEN, pad_id=vocab.pad_id)
    docs = []
    for image_docs, text in zip(class_image_documents(vocab, objective, 3, SEQ_LEN, gen,
                                                      np.random.default_rng(0)), texts):
        docs += [*image_docs, text]
    batch = pack_documents(docs, seq_len=SEQ_LEN, pad_id=vocab.pad_id)
    if kind == "image":
        batch["targets"] = batch["targets"].masked_fill(batch["block_ids"] < 0, -100)
    return batch


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(batch)
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# The text targets take one path whatever the code head: text-only batches once.
@pytest.mark.parametrize("kind,objective,code_head,code_maps",
                         [("text", "rdpm", "shared", 4)] + [(kind, *case) for kind in
                                                            ("image", "mixed") for case in CASES])
def test_chunked_loss_equals_the_plain_loss_and_gradients(assets, kind, objective, code_head,
                                                          code_maps):
    _, tok_dir, tok, vocab, vocab_cfg = assets[code_maps]
    plain = tiny_model(vocab, vocab_cfg, tok, tok_dir, code_head=code_head,
                       image_objective=objective)
    chunked = copy.deepcopy(plain)
    chunked.cfg.loss_chunk_tokens = 7   # divides no target count here: a ragged last chunk
    batch = _batch(vocab, objective, kind)
    want, want_grads = _loss_and_grads(plain, batch)
    got, got_grads = _loss_and_grads(chunked, batch)
    expect_text, expect_image = kind != "image", kind != "text"
    assert (int(want["text_tokens"]) > 7) == expect_text
    assert (int(want["image_tokens"]) > 7) == expect_image
    for key in ("loss", "text_loss", "image_loss", "text_tokens", "image_tokens"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for g in got_grads.values())


def _boolean_indexing_loss(model, batch) -> dict:
    """The forward's loss as written before it stopped reading from the device: `.any()` and
    boolean indexing of the text and code target positions (the plain path)."""
    mask = build_attention_mask(batch["doc_ids"], batch["block_ids"], model.objective.image_rule)
    emb, ctx = model.embed_sequence(batch)
    hidden, _ = model.backbone(emb, batch["position_ids"], mask)
    targets, is_block = batch["targets"], batch["block_ids"] >= 0
    text_sel, code_sel = (targets >= 0) & ~is_block, (targets >= 0) & is_block
    text_sum = code_sum = torch.zeros(())
    if text_sel.any():
        logits = F.linear(hidden[text_sel], model.backbone.head_weight).float()
        text_sum = F.cross_entropy(logits, targets[text_sel], reduction="sum")
    if code_sel.any():
        code_ctx = ctx.select(code_sel[is_block]) if ctx is not None else None
        logits = model.code_logits(hidden[code_sel], code_ctx)
        code_sum = F.cross_entropy(logits, targets[code_sel] - model.vocab.code_offset,
                                   reduction="sum")
    n_text, n_code = text_sel.sum(), code_sel.sum()
    return {"loss": (text_sum + code_sum) / (n_text + n_code).clamp_min(1),
            "text_loss": text_sum / n_text.clamp_min(1), "image_loss": code_sum / n_code.clamp_min(1)}


@pytest.mark.parametrize("kind,objective,code_head,code_maps",
                         [("text", "rdpm", "shared", 4)] + [(kind, *case) for kind in
                                                            ("image", "mixed") for case in CASES])
def test_the_loss_equals_the_boolean_indexing_reference(assets, kind, objective, code_head,
                                                        code_maps):
    _, tok_dir, tok, vocab, vocab_cfg = assets[code_maps]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, code_head=code_head,
                       image_objective=objective)
    batch = _batch(vocab, objective, kind)
    # The host-side count of image positions the forward relies on.
    assert model.objective.block_positions(batch) == int((batch["block_ids"] >= 0).sum())
    got, got_grads = _loss_and_grads(model, batch)
    model.zero_grad()
    want = _boolean_indexing_loss(model, batch)
    want["loss"].backward()
    for key in ("loss", "text_loss", "image_loss"):
        torch.testing.assert_close(got[key], want[key].detach(), rtol=1e-5, atol=1e-6, msg=key)
    assert torch.isfinite(got["loss"]) and got["loss"] > 0
    want_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert want_grads.keys() <= got_grads.keys()
    for name, grad in got_grads.items():
        # A head no target reached (image-only batch, distance head) now has a zero gradient
        # where it had none: the text loss runs over rows that are all ignored.
        expected = want_grads.get(name, torch.zeros_like(grad))
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_functions_match_one_pass_at_every_chunk_size():
    """The library functions alone: weights scaled by a non-unit upstream gradient, chunk sizes
    below, at and above the row count, and an inference pass that needs no gradient."""
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
    ref_h, ref_w = torch.autograd.grad(3.5 * ref, (hidden, weight))
    for chunk in (1, 5, 23, 100):
        total = linear_cross_entropy_sum(hidden, weight, targets, chunk)
        got_h, got_w = torch.autograd.grad(3.5 * total, (hidden, weight))
        torch.testing.assert_close(total, ref)
        torch.testing.assert_close(got_h, ref_h)
        torch.testing.assert_close(got_w, ref_w)
        other = chunked_cross_entropy_sum(lambda h, _: h @ weight.t(), hidden, targets, None, chunk)
        got_h, got_w = torch.autograd.grad(3.5 * other, (hidden, weight))
        torch.testing.assert_close(other, ref)
        torch.testing.assert_close(got_h, ref_h)
        torch.testing.assert_close(got_w, ref_w)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy_sum(hidden, weight, targets, 4), ref)
    with pytest.raises(ValueError, match="chunk_tokens=0"):
        linear_cross_entropy_sum(hidden, weight, targets, 0)


def test_a_negative_chunk_is_refused_naming_the_key(assets):
    _, tok_dir, tok, vocab, vocab_cfg = assets[4]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir)
    model.cfg.loss_chunk_tokens = -1
    with pytest.raises(ConfigError, match=r"model\.loss_chunk_tokens=-1"):
        model.cfg.validate()


@pytest.mark.parametrize("chunked", [True, False])
def test_no_tensor_of_all_logits_is_saved_for_backward(chunked):
    """What autograd packs for the backward (and, inside the chunked function, per chunk): the
    plain path keeps the (targets x vocabulary) logits; the chunked one never more than a chunk's."""
    torch.manual_seed(0)
    rows, width, vocab, chunk = 256, 16, 300, 32
    hidden = torch.randn(rows, width, requires_grad=True)
    weight = torch.randn(vocab, width, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if chunked:
            for fn in (lambda: linear_cross_entropy_sum(hidden, weight, targets, chunk),
                       lambda: chunked_cross_entropy_sum(lambda h, _: h @ weight.t(), hidden,
                                                         targets, None, chunk)):
                fn().backward()
        else:
            torch.nn.functional.cross_entropy(hidden @ weight.t(), targets,
                                              reduction="sum").backward()
    assert (max(sizes) <= chunk * vocab) == chunked, (max(sizes), rows * vocab)
