"""The pretraining optimizer and schedule, built before DeepSpeed wraps them.

- torch AdamW (DeepSpeed takes it as is): weight decay on the matrices only; norms, biases and
  embeddings are not decayed. `optim.fused` asks for torch's fused kernel.
- LambdaLR with linear warmup, then cosine to `optim.min_lr_ratio * lr` at `train.steps`.
"""

from __future__ import annotations

import torch

from unimodal.config import warmup_cosine
from unimodal.pretraining.config import PretrainConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        embedding_like = "embed" in name or "norm" in name or p.ndim < 2
        (no_decay if embedding_like else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: PretrainConfig):
    """(AdamW, LambdaLR) for `model` under `cfg.optim` and `cfg.train.steps`."""
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                            fused=cfg.optim.fused or None)   # None: torch picks foreach or not
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(
        s, cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.min_lr_ratio))
    return opt, sched
