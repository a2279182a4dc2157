"""Cross-entropy over the output head in chunks of tokens, so that the (tokens x vocabulary)
logits never exist at once (`model.loss_chunk_tokens`; 0 = the plain path in unified.py).

Design choices, one line each:
- Text targets (full vocabulary, ~132k at uni_1b) go through `linear_cross_entropy_sum`: one
  autograd function that computes each chunk's loss and its gradients in the forward pass (the
  fused linear + cross-entropy of Liger-Kernel), so the backward only scales stored gradients: no
  logits are kept for the backward and the big head matmul is not run a second time.
- Each chunk runs the plain path's own ops (F.linear, .float(), F.cross_entropy) under a local
  autograd graph, so loss and gradients equal the plain path's up to float rounding; the weight
  gradient is summed over chunks in float32.
- Image targets (K codes, any code head) go through `chunked_cross_entropy_sum`: the objective's
  own `code_logits` per chunk under torch.utils.checkpoint (recomputed in the backward; K << V
  keeps that cheap, and no code head needs a second, hand-written gradient).
- The text head is padded with zero rows to a multiple of HEAD_ROWS_MULTIPLE for its matmuls
  and the padded logits are dropped before the softmax (`padded_head`; unified.py's plain head
  loss does the same): a vocabulary size that is not a multiple of 8 otherwise sends cuBLAS on
  Hopper to an sm80 fallback kernel (README "Pretraining throughput").
- Both are sums (the caller divides by the target count), like `reduction="sum"`. A target of
  -100 (F.cross_entropy's ignore_index, the documents' IGNORE) adds nothing and gets no gradient,
  so the caller may pass rows without a target instead of dropping them (a device read).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


# The head's rows are padded to a multiple of this for its matmuls (16-byte aligned logits rows).
HEAD_ROWS_MULTIPLE = 64


def padded_head(weight: torch.Tensor, rows_multiple: int = HEAD_ROWS_MULTIPLE) -> torch.Tensor:
    """`weight` (V, W) with zero rows appended up to a multiple of `rows_multiple` (itself when V
    is one already); the caller drops the padded logits, `[:, :V]`."""
    pad = -weight.shape[0] % rows_multiple
    return F.pad(weight, (0, 0, 0, pad)) if pad else weight


class _LinearCrossEntropySum(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight^T, target_i), gradients computed chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens):
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = (torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                       if need_weight else None)
        vocab = weight.shape[0]
        w = padded_head(weight.detach()).requires_grad_(need_weight)
        for start in range(0, hidden.shape[0], chunk_tokens):
            part = slice(start, start + chunk_tokens)
            h = hidden[part].detach().requires_grad_(need_hidden)
            with torch.enable_grad():
                logits = F.linear(h, w)[:, :vocab].float()
                loss = F.cross_entropy(logits, targets[part], reduction="sum")
            wanted = [x for x, need in ((h, need_hidden), (w, need_weight)) if need]
            grads = list(torch.autograd.grad(loss, wanted)) if wanted else []
            if need_hidden:
                grad_hidden[part] = grads.pop(0)
            if need_weight:
                grad_weight += grads.pop(0)[:vocab].float()
            total += loss.detach()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:  # scaled in float32: a bf16 copy of 1/targets would be off
            grad_hidden = (grad_hidden.float() * grad_total).to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None


def linear_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                             chunk_tokens: int) -> torch.Tensor:
    """float32 sum of CE(F.linear(hidden, weight).float(), targets) over chunks of
    `chunk_tokens` rows: hidden (N, W), weight (V, W), targets (N,) in [0, V) or -100."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens}: must be >= 1")
    return _LinearCrossEntropySum.apply(hidden, weight, targets, chunk_tokens)


def _chunk_loss(logits_fn, hidden, targets, context):
    return F.cross_entropy(logits_fn(hidden, context), targets, reduction="sum")


def chunked_cross_entropy_sum(logits_fn: Callable, hidden: torch.Tensor, targets: torch.Tensor,
                              context, chunk_tokens: int) -> torch.Tensor:
    """float32 sum of CE(logits_fn(hidden, context), targets) over chunks of `chunk_tokens`
    rows. `logits_fn` must treat rows independently (every code head does); `context` is None
    or has `select(rows)` (the objective's per-position context, e.g. rdpm's BlockContext)."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens}: must be >= 1")
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        sub = context.select(part) if context is not None else None
        if torch.is_grad_enabled():
            # The code heads draw no random numbers: no RNG state to stash per chunk.
            loss = checkpoint(_chunk_loss, logits_fn, hidden[part], targets[part], sub,
                              use_reentrant=False, preserve_rng_state=False)
        else:
            loss = _chunk_loss(logits_fn, hidden[part], targets[part], sub)
        total = total + loss
    return total
