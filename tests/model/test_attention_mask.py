"""The attention rule written once as a mask_mod: the dense SDPA mask is exactly it, and the
BlockMask built by the compiled create_block_mask equals the uncompiled one. (That flex_attention
with the BlockMask agrees with SDPA on the dense mask needs CUDA: tests/model/test_unified.py.)"""

import pytest
import torch

from unimodal.model.attention_mask import block_mask, dense_mask, unified_mask_mod
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
