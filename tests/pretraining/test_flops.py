"""Training FLOPs: the hand count in unimodal/pretraining/flops.py against torch's own counter."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unified_fixtures import class_image_documents, make_assets, tiny_model
from unimodal.data.sequences import pack_documents
from unimodal.pretraining.flops import attention_flops, code_head_parameters, matmul_flops, step_flops

SEQ_LEN = 300
CASES = [("rdpm", "shared", 4), ("rdpm", "latent", 4), ("rdpm", "latent_shared", 4),
         ("next_token", "shared", 1), ("masked", "shared", 1)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return {code_maps: make_assets(tmp_path_factory.mktemp(f"assets_t{code_maps}"), code_maps=code_maps)
            for code_maps in (1, 4)}


def _batch(vocab, objective: str) -> dict:
    """Class images and one text document, through the objective's real document builder."""
    per_sample = class_image_documents(vocab, objective, 4, SEQ_LEN, torch.Generator().manual_seed(0),
                                       np.random.default_rng(0))
    return pack_documents([d for docs in per_sample for d in docs], seq_len=SEQ_LEN,
                          pad_id=vocab.pad_id)


@pytest.mark.parametrize("objective,code_head,code_maps", CASES)
def test_matmul_flops_equal_torchs_flop_counter(assets, objective, code_head, code_maps):
    """Forward + backward of one packed batch: the weight-matmul part of step_flops is within 1%
    of FlopCounterMode (which does not see the CPU attention kernel: that term is checked below),
    once the head work on rows without a target is added (not model FLOPs; see flops.py)."""
    _, tok_dir, tok, vocab, vocab_cfg = assets[code_maps]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir, code_head=code_head,
                       image_objective=objective)
    batch = _batch(vocab, objective)
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        out["loss"].backward()
    counted = counter.get_total_flops()
    blocks = int((batch["block_ids"] >= 0).sum())
    tokens, text, code = batch["input_ids"].numel(), int(out["text_tokens"]), int(out["image_tokens"])
    hand = matmul_flops(model, tokens, text, code, blocks)
    untargeted = 6.0 * (model.backbone.config.hidden_size * vocab.size * (tokens - blocks - text)
                        + code_head_parameters(model) * (blocks - code))
    assert hand + untargeted == pytest.approx(counted, rel=0.01), (hand, untargeted, counted)
    assert step_flops(model, tokens, text, code, blocks, SEQ_LEN) == pytest.approx(
        hand + attention_flops(model, tokens, SEQ_LEN))


def test_attention_flops_are_the_full_matrix_count(assets):
    """12 * layers * width * seq_len per token: QK^T and AV (2 FLOPs per multiply-add), forward
    and the two backward matmuls each; measured here on one layer's math with FlopCounterMode."""
    _, tok_dir, tok, vocab, vocab_cfg = assets[4]
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir)
    cfg = model.backbone.config
    heads, width, n = cfg.num_attention_heads, cfg.hidden_size, 50
    q, k, v = (torch.randn(1, heads, n, width // heads, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        scores = q @ k.transpose(-1, -2)
        (scores.softmax(-1) @ v).sum().backward()
    per_layer = attention_flops(model, n, n) / cfg.num_hidden_layers
    assert per_layer == counter.get_total_flops()
