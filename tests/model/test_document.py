"""The training document record (unimodal/model/document.py): IGNORE is the ignore index of
PyTorch's cross entropy (a target the loss skips), a document's length is its token count, and
each document owns its block list."""

import torch
import torch.nn.functional as F

from unimodal.model.document import IGNORE, Document


def test_ignore_is_the_cross_entropy_ignore_index():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    targets = torch.tensor([0, IGNORE, 2])
    expected = (F.cross_entropy(logits[[0]], targets[[0]]) + F.cross_entropy(logits[[2]], targets[[2]])) / 2
    torch.testing.assert_close(F.cross_entropy(logits, targets), expected)   # the default skips it
    assert IGNORE < 0                                    # never a token id


def test_length_and_own_blocks():
    a = Document([1, 5, 6], [5, 6, IGNORE], [0, 1, 2], [-1, -1, -1])
    b = Document([1, 2], [2, IGNORE], [0, 1], [-1, -1])
    assert len(a) == 3 and len(b) == 2
    a.blocks.append({"block_steps": 1})
    assert b.blocks == [] and a.blocks == [{"block_steps": 1}]   # no shared default list
    assert a == Document([1, 5, 6], [5, 6, IGNORE], [0, 1, 2], [-1, -1, -1], [{"block_steps": 1}])
