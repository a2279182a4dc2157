"""Training sequences (unimodal/data/sequences.py): the text document layout, and greedy packing
into rows against a hand-built expected batch: no document straddles rows, padding has doc id -1
and no target, block ids are numbered row-major and block inputs stacked key by key."""

from types import SimpleNamespace

import pytest
import torch

from unimodal.data.sequences import IGNORE, Document, pack_documents, text_document

VOCAB = SimpleNamespace(bos_id=1, eos_id=2)   # text_document needs only these two ids


def doc(ids: list[int], blocks: int = 0, tag: int = 0) -> Document:
    """A document of len(ids) tokens whose last `blocks` positions are one block each."""
    n = len(ids)
    block_of = [-1] * (n - blocks) + list(range(blocks))
    return Document(ids, [i + 100 for i in ids], list(range(n)), block_of,
                    [{"block_codes": torch.full((2, 2), tag * 10 + b), "block_steps": tag * 10 + b}
                     for b in range(blocks)])


def test_text_document_predicts_the_next_token():
    d = text_document(VOCAB, [7, 8, 9])
    assert d.input_ids == [1, 7, 8, 9, 2] and d.targets == [7, 8, 9, 2, IGNORE]
    assert d.position_ids == [0, 1, 2, 3, 4] and d.block_of == [-1] * 5 and d.blocks == []
    assert text_document(VOCAB, []).input_ids == [1, 2]


def test_packing_matches_a_hand_built_batch():
    docs = [doc([10, 11, 12]), doc([20, 21, 22, 23], blocks=2, tag=1), doc([30, 31], blocks=1, tag=2),
            doc([40, 41, 42, 43, 44, 45])]
    out = pack_documents(docs, seq_len=7, pad_id=5)
    # Greedy in order: 3 + 4 fill row 0; 2 then 6 does not fit beside it: rows 1 and 2.
    P = IGNORE
    assert out["input_ids"].tolist() == [[10, 11, 12, 20, 21, 22, 23],
                                         [30, 31, 5, 5, 5, 5, 5],
                                         [40, 41, 42, 43, 44, 45, 5]]
    assert out["targets"].tolist() == [[110, 111, 112, 120, 121, 122, 123],
                                       [130, 131, P, P, P, P, P],
                                       [140, 141, 142, 143, 144, 145, P]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 0, 0, 0, 0],
                                            [0, 1, 2, 3, 4, 5, 0]]
    assert out["doc_ids"].tolist() == [[0, 0, 0, 1, 1, 1, 1], [0, 0, -1, -1, -1, -1, -1],
                                       [0, 0, 0, 0, 0, 0, -1]]
    assert out["block_ids"].tolist() == [[-1, -1, -1, -1, -1, 0, 1], [-1, 2, -1, -1, -1, -1, -1],
                                         [-1] * 7]
    # blocks stacked in the order of their ids: tensors stacked, ints made a tensor
    assert out["block_codes"].shape == (3, 2, 2)
    assert out["block_codes"][:, 0, 0].tolist() == [10, 11, 20]
    assert out["block_steps"].tolist() == [10, 11, 20]
    assert all(v.dtype == torch.long for k, v in out.items() if k != "block_codes") \
        and out["block_codes"].dtype == torch.long


def test_text_only_packing_has_no_block_keys_and_fixed_rows_pad():
    out = pack_documents([text_document(VOCAB, [7]), text_document(VOCAB, [8, 9])], seq_len=8, rows=3)
    assert set(out) == {"input_ids", "targets", "position_ids", "doc_ids", "block_ids"}
    assert out["input_ids"].shape == (3, 8)
    assert out["input_ids"][0].tolist() == [1, 7, 2, 1, 8, 9, 2, 0]       # default pad_id 0
    assert (out["doc_ids"][1:] == -1).all() and (out["targets"][1:] == IGNORE).all()
    # A document exactly seq_len long fills its row.
    exact = pack_documents([text_document(VOCAB, [7] * 6), text_document(VOCAB, [8])], seq_len=8)
    assert exact["doc_ids"].tolist() == [[0] * 8, [0, 0, 0, -1, -1, -1, -1, -1]]


def test_packing_errors_say_what_does_not_fit():
    with pytest.raises(ValueError, match="document of 9 tokens does not fit seq_len=8"):
        pack_documents([text_document(VOCAB, [7] * 7)], seq_len=8)
    docs = [text_document(VOCAB, [7] * 4)] * 3
    with pytest.raises(ValueError, match="3 documents need 3 rows, only 2 given"):
        pack_documents(docs, seq_len=8, rows=2)
