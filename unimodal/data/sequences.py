"""Training sequences of the unified model: text documents, and packing documents into rows.

A text document:   <bos> t_1 ... t_n <eos>           targets: the next token
An image document: <bos> prompt <boi> + the image part, laid out by the image objective
    (`unimodal.model.objectives`; RDPM: one block of h*w positions per drawn step t, target
    code_offset + C_t[i]; see objectives/rdpm.py).

Design choices, one line each:
- `Document` and `IGNORE` live in `unimodal.model.document` (the objectives build documents and
  the model must not import data); they and RDPM's `image_document` are re-exported here.
- Packing is greedy in order; a document never straddles two rows; padding has doc id -1 and no
  target. Block ids are numbered in flattened (row-major) order, which is the order
  `UnifiedModel.embed_sequence` scatters block inputs in.
- A document's per-block inputs (`Document.blocks`, one dict per block) are stacked key by key,
  so packing knows no objective.
"""

from __future__ import annotations

import torch

from unimodal.model.document import IGNORE, Document
from unimodal.model.objectives.rdpm import image_document  # noqa: F401  (re-exported)
from unimodal.model.vocabulary import Vocabulary

__all__ = ["IGNORE", "Document", "image_document", "pack_documents", "text_document"]


def text_document(vocab: Vocabulary, ids: list[int]) -> Document:
    seq = [vocab.bos_id, *ids, vocab.eos_id]
    return Document(seq, seq[1:] + [IGNORE], list(range(len(seq))), [-1] * len(seq))


def pack_documents(docs: list[Document], seq_len: int, rows: int | None = None,
                   pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Greedy packing into (rows, seq_len); documents longer than seq_len raise ValueError."""
    packed: list[list[Document]] = [[]]
    used = 0
    for doc in docs:
        if len(doc) > seq_len:
            raise ValueError(f"document of {len(doc)} tokens does not fit seq_len={seq_len}")
        if used + len(doc) > seq_len:
            packed.append([])
            used = 0
        packed[-1].append(doc)
        used += len(doc)
    rows = rows or len(packed)
    if len(packed) > rows:
        raise ValueError(f"{len(docs)} documents need {len(packed)} rows, only {rows} given")
    shape = (rows, seq_len)
    out = {"input_ids": torch.full(shape, pad_id), "targets": torch.full(shape, IGNORE),
           "position_ids": torch.zeros(shape, dtype=torch.long),
           "doc_ids": torch.full(shape, -1), "block_ids": torch.full(shape, -1)}
    blocks: list[dict] = []
    for r, row in enumerate(packed):
        start = 0
        for d, doc in enumerate(row):
            end = start + len(doc)
            out["input_ids"][r, start:end] = torch.tensor(doc.input_ids)
            out["targets"][r, start:end] = torch.tensor(doc.targets)
            out["position_ids"][r, start:end] = torch.tensor(doc.position_ids)
            out["doc_ids"][r, start:end] = d
            local = torch.tensor(doc.block_of)
            out["block_ids"][r, start:end] = torch.where(local >= 0, local + len(blocks), -1)
            blocks += doc.blocks
            start = end
    if blocks:
        for key in blocks[0]:
            values = [block[key] for block in blocks]
            out[key] = (torch.stack(values) if isinstance(values[0], torch.Tensor)
                        else torch.tensor(values))
    return out
