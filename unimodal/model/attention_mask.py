"""The attention rule of the unified model, written once as a flex_attention `mask_mod`.

Per token of a packed sequence: `doc_ids` (which document; -1 = padding) and `block_ids` (-1 for
text/prompt tokens, else the id of the image block the token belongs to). A query may attend to

- text tokens of its own document at or before it (causal text; a block's prompt is text before it),
- every token of its own image block (bidirectional within a block),
- itself (so padding rows are never empty),

and never to another document. Other blocks of the same image are not visible: z'_{t-1} in the block
input carries the history (Markov RDPM).

`build_attention_mask` turns the rule into a BlockMask for flex_attention on CUDA, and into the dense
boolean mask of the very same function (`create_mask`) for SDPA on the CPU, where flex_attention has
no backward pass.
"""

from __future__ import annotations

import torch
from torch.nn.attention.flex_attention import create_block_mask, create_mask


def unified_mask_mod(doc_ids: torch.Tensor, block_ids: torch.Tensor):
    def mask_mod(b, h, q_idx, kv_idx):
        same_doc = doc_ids[b, q_idx] == doc_ids[b, kv_idx]
        kv_is_text = block_ids[b, kv_idx] < 0
        causal_text = kv_is_text & (kv_idx <= q_idx)
        same_block = (block_ids[b, q_idx] == block_ids[b, kv_idx]) & (block_ids[b, q_idx] >= 0)
        return (same_doc & (causal_text | same_block)) | (q_idx == kv_idx)

    return mask_mod


def dense_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) boolean mask, True = may attend."""
    b, length = doc_ids.shape
    return create_mask(unified_mask_mod(doc_ids, block_ids), b, None, length, length,
                       device=doc_ids.device)


def block_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor):
    b, length = doc_ids.shape
    return create_block_mask(unified_mask_mod(doc_ids, block_ids), b, None, length, length,
                             device=doc_ids.device)


def build_attention_mask(doc_ids: torch.Tensor, block_ids: torch.Tensor, use_flex: bool | None = None):
    """BlockMask on CUDA (flex_attention), dense boolean elsewhere (SDPA)."""
    if use_flex is None:
        use_flex = doc_ids.is_cuda
    return block_mask(doc_ids, block_ids) if use_flex else dense_mask(doc_ids, block_ids)
