"""Exponential moving average of the trainable weights, in float32.

Under ZeRO stages 0-2 every rank holds the full (bf16) module weights, so every rank keeps the
same EMA and rank 0 writes it; stage 3 partitions the weights and is refused by the config.
The EMA is what sampling and the consolidated export use.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        current = [params[n].detach().float() for n in self.names]
        torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.contiguous().cpu() for n, t in zip(self.names, self.shadow)}

    def merged_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with EMA values in place of the trainable weights."""
        state = {k: v.detach() for k, v in model.state_dict().items()}
        for n, t in zip(self.names, self.shadow):
            state[n] = t.to(state[n].dtype)
        return state

    def save(self, path) -> None:
        save_file(self.state_dict(), str(path))

    def load(self, path) -> None:
        state = load_file(str(path))
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"{path}: EMA weights missing {missing[:3]}")
        for i, n in enumerate(self.names):
            self.shadow[i].copy_(state[n])
