"""One training document of the unified model, before packing: the record every image objective
builds and `unimodal.data.sequences.pack_documents` packs.

It lives in the model package (not in data/) because the image objectives
(`unimodal.model.objectives`) build the image part of a document and the model must not import
data; data/ imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE = -100                             # target of a position that predicts nothing


@dataclass
class Document:
    input_ids: list[int]
    targets: list[int]                    # IGNORE = no target
    position_ids: list[int]
    block_of: list[int]                   # -1 for text, else index into `blocks`
    blocks: list[dict[str, torch.Tensor | int]] = field(default_factory=list)
    # each block: the image objective's per-block inputs, one dict per block; pack_documents
    # stacks them key by key into batch tensors (RDPM: block_codes (T, h, w) long, block_steps
    # t in 1..T, block_noise eps_t (d, h, w)).

    def __len__(self) -> int:
        return len(self.input_ids)
