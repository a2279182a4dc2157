"""The attention rule written once as a mask_mod: the dense SDPA mask is exactly it, and the
BlockMask built by the compiled create_block_mask equals the uncompiled one. (That flex_attention
with the BlockMask agrees with SDPA on the dense mask needs CUDA: tests/model/test_unified.py.)"""

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

from unimodal.model.attention_mask import block_mask, dense_mask, unified_mask_mod
from unimodal.model.objectives.next_token import NextTokenObjective
from unimodal.model.objectives.rdpm import RDPMObjective

RULE = RDPMObjective.image_rule   # the default objective's part of the mask


def test_dense_mask_is_exactly_the_mask_mod():
    torch.manual_seed(1)
    doc_ids = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1, -1, -1],
                            [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]])
    block_ids = torch.tensor([[-1, -1, 0, 0, 0, 1, 1, -1, -1, -1, -1, -1],
                              [-1, -1, -1, -1, -1, -1, -1, 2, 2, 3, 3, 3]])
    dense = dense_mask(doc_ids, block_ids, RULE)[:, 0]
    mod = unified_mask_mod(doc_ids, block_ids, RULE)
    for b in range(2):
        for q in range(12):
            for k in range(12):
                expect = bool(mod(torch.tensor(b), torch.tensor(0), torch.tensor(q), torch.tensor(k)))
                assert bool(dense[b, q, k]) == expect
    row = dense[0]
    assert row[3, :2].all() and row[3, 2:5].all() and not row[3, 5:7].any()   # block 0 sees prompt+itself
    assert not row[6, 2:5].any() and row[6, 5:7].all()                          # not the other block
    assert not row[7, :7].any() and row[8, 7] and not row[7, 8]                 # doc 1: own causal text
    assert not row[10, :10].any() and row[10, 10]                               # padding sees itself only
    assert not dense[1, 5, :5].any()                                            # no cross-document


@pytest.mark.parametrize("rule", [RDPMObjective.image_rule, NextTokenObjective.image_rule],
                         ids=["rdpm", "next_token"])
def test_dense_mask_equals_flex_attentions_create_mask(rule):
    # dense_mask calls the mask_mod once on broadcasting index grids; create_mask vmaps it over
    # every (b, h, q, kv): the reference. Random packed rows: documents, blocks, padding.
    gen = torch.Generator().manual_seed(0)
    rows, length = 4, 96
    doc_ids = torch.sort(torch.randint(0, 4, (rows, length), generator=gen), dim=1).values
    doc_ids[:, -7:] = -1
    block_ids = torch.full((rows, length), -1)
    block_ids[:, 10:26], block_ids[:, 26:42], block_ids[2, 60:90] = 0, 1, 5
    expect = create_mask(unified_mask_mod(doc_ids, block_ids, rule), rows, None, length, length,
                         device="cpu")
    got = dense_mask(doc_ids, block_ids, rule)
    assert got.shape == expect.shape == (rows, 1, length, length)
    assert torch.equal(got, expect)
    assert 0 < int(got.sum()) < rows * length * length   # neither all hidden nor all visible


@pytest.mark.slow
def test_compiled_block_mask_equals_the_uncompiled_one():
    # Built on the CPU (create_block_mask runs there; only flex_attention's backward does not).
    # Two rows of 256 tokens: documents of text, prompt and 64-token image blocks, then padding.
    length = 256
    doc_ids = torch.full((2, length), -1)
    block_ids = torch.full((2, length), -1)
    doc_ids[0, :150], doc_ids[0, 150:240] = 0, 1
    block_ids[0, 10:74], block_ids[0, 74:138] = 0, 1
    doc_ids[1, :] = 0
    block_ids[1, 100:164], block_ids[1, 190:254] = 2, 3
    plain = block_mask(doc_ids, block_ids, RULE)
    compiled = block_mask(doc_ids, block_ids, RULE, compiled=True)
    assert torch.equal(compiled.to_dense(), plain.to_dense())
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        torch.testing.assert_close(getattr(compiled, name), getattr(plain, name))
    # and the blocks it marks partly or fully visible are those the dense mask has any True in
    dense = dense_mask(doc_ids, block_ids, RULE)[:, 0]
    blocks = dense.unflatten(1, (2, 128)).unflatten(3, (2, 128)).any(4).any(2)
    assert torch.equal(plain.to_dense()[:, 0].bool(), blocks)
