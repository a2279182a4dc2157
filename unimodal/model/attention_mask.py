"""The attention rule of the unified model, written once as a flex_attention `mask_mod`.

Per token of a packed sequence: `doc_ids` (which document; -1 = padding) and `block_ids` (-1 for
text/prompt tokens, else the id of the image block the token belongs to). A query may attend to

- text tokens of its own document at or before it (causal text; a block's prompt is text before it),
- the image tokens of its own document that the image objective's `image_rule` allows
  (RDPM: every token of its own block, bidirectional within a block; see
  `unimodal.model.objectives`),
- itself (so padding rows are never empty),

and never to another document.

`image_rule(block_ids, b, q_idx, kv_idx)` is the image objective's contribution: a boolean for
"query q may see image key kv" (kv is an image token; same-document is checked here).

`build_attention_mask` turns the rule into a BlockMask for flex_attention on CUDA, and into the dense
boolean mask of the very same function for SDPA on the CPU, where flex_attention has no backward
pass.
"""

from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import create_block_mask


def unified_mask_mod(doc_ids: torch.Tensor, block_ids: torch.Tensor, image_rule):
    def mask_mod(b, h, q_idx, kv_idx):
        same_doc = doc_ids[b, q_idx] == doc_ids[b, kv_idx]
        kv_is_text = block_ids[b, kv_idx] < 0
        causal_text = kv_is_text & (kv_idx <= q_idx)
        image = image_rule(block_ids, b, q_idx, kv_idx)
        return (same_doc & (causal_text | image)) | (q_idx == kv_idx)

    return mask_mod


def dense_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor, image_rule) -> torch.Tensor:
    """(B, 1, L, L) boolean mask, True = may attend: the mask_mod called once on broadcasting
    index grids. It equals flex_attention's `create_mask` (a test pins this), which vmaps the
    mask_mod over the four indices and built the CPU step's mask several times slower."""
    b, length = doc_ids.shape
    positions = torch.arange(length, device=doc_ids.device)
    rows = torch.arange(b, device=doc_ids.device)[:, None, None, None]
    head = torch.zeros((), dtype=torch.long, device=doc_ids.device)
    mask_mod = unified_mask_mod(doc_ids, block_ids, image_rule)
    return mask_mod(rows, head, positions[:, None], positions[None, :]).expand(b, 1, length, length)


@functools.cache
def _compiled_create_block_mask():
    # Uncompiled, create_block_mask evaluates the mask_mod through vmap in Python on every call
    # (a fixed cost per batch, whatever its size); compiled, it is one fused kernel (torchtitan
    # does the same).
    return torch.compile(create_block_mask)


def block_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor, image_rule, compiled: bool = False):
    b, length = doc_ids.shape
    create = _compiled_create_block_mask() if compiled else create_block_mask
    return create(unified_mask_mod(doc_ids, block_ids, image_rule), b, None, length, length,
                  device=doc_ids.device)


def build_attention_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor, image_rule,
                         use_flex: bool | None = None, compiled: bool = False):
    """BlockMask on CUDA (flex_attention), dense boolean elsewhere (SDPA). `compiled` builds the
    BlockMask with a compiled create_block_mask (model.compile_block_mask)."""
    if use_flex is None:
        use_flex = doc_ids.is_cuda
    if use_flex:
        return block_mask(doc_ids, block_ids, image_rule, compiled)
    return dense_mask(doc_ids, block_ids, image_rule)
