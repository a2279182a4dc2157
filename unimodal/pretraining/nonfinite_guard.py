"""Non-finite losses and gradients never reach the weights, without a host sync per step.

Design choices, one line each:
- A non-finite loss multiplies its own backward by NaN (`loss_for_backward`): every gradient of
  that optimizer step turns NaN, so the step is skipped exactly like one with non-finite
  gradients. A finite loss is multiplied by exactly 1.0, so good steps stay bit-identical.
- The skip itself is DeepSpeed's: its ZeRO 1-3, bf16 and fp16 optimizers check the gradients
  inside `engine.step()` (a host read they make anyway) and on overflow leave the weights, the
  AdamW moments and step count, and the LR schedule as they were. A zero gradient would not do:
  AdamW would still decay its moments and apply weight decay.
- `engine.was_step_applied()` is a host bool DeepSpeed has already computed: the trainer learns
  of a skipped step at no cost, so the step count, the streaks and `max_nonfinite_steps` need no
  read of a device value on good steps.
- Only a skipped step (rare) reads the device flag of non-finite losses, all-reduced, to name
  the cause in the log; every rank reaches that read together, since the skip is global.
- An optimizer that applies a step anyway (e.g. ZeRO 0 without bf16/fp16, whose torch AdamW has
  no overflow check) is caught after the fact: `check_weights`, on log steps and before every
  checkpoint and export, checks that every weight is finite (one foreach norm on the device, one
  read) and stops the run before anything is saved from corrupt weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist

from unimodal.checkpointing import NonFiniteStreak, latest_checkpoint


class NonFiniteGuard:
    def __init__(self, limit: int, ckpt_root: Path, device: torch.device):
        self.ckpt_root, self.device = ckpt_root, device
        self.bad_losses = NonFiniteStreak(limit, ckpt_root, "a non-finite loss")
        self.bad_grads = NonFiniteStreak(limit, ckpt_root, "non-finite gradients")
        # Non-finite losses among this optimizer step's micro-batches (this rank).
        self.losses_this_step = torch.zeros((), dtype=torch.int32, device=device)

    @property
    def skipped(self) -> int:
        """Updates skipped so far, for either cause."""
        return self.bad_losses.total + self.bad_grads.total

    def loss_for_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """`loss` unchanged (times exactly 1.0) when finite; otherwise times NaN, so that every
        gradient of the step is NaN and the optimizer skips the update."""
        finite = torch.isfinite(loss.detach())
        self.losses_this_step += ~finite
        return loss * torch.where(finite, loss.new_ones(()), loss.new_full((), math.nan))

    def step_applied(self, engine, step: int, report) -> bool:
        """After `engine.step()` at a gradient-accumulation boundary: whether the update of
        optimizer step `step` reached the weights. A skipped step is reported and counted, and
        `limit` in a row raise FloatingPointError naming the last good checkpoint."""
        if not engine.was_step_applied():
            # The one read of a device value here, on a skipped step only: which cause it was.
            flag = self.losses_this_step.clone()
            dist.all_reduce(flag)
            self.losses_this_step.zero_()
            if flag.item() > 0:
                self.bad_losses.skipped(step, report)
            else:
                self.bad_losses.good()
                self.bad_grads.skipped(step, report)
            return False
        self.bad_losses.good()
        self.bad_grads.good()
        self.losses_this_step.zero_()
        return True

    def check_weights(self, model: torch.nn.Module, step: int) -> None:
        """On log steps and before every checkpoint and export (all ranks together): stop if a
        weight is not finite, i.e. an optimizer applied a bad update, before it can be saved."""
        # ZeRO 3 leaves each rank a shard (possibly empty): each rank checks what it holds.
        params = [p.detach() for p in model.parameters() if p.numel()]
        norms = [n.float() for n in torch._foreach_norm(params)]  # a NaN or inf weight shows
        flag = torch.zeros(1, dtype=torch.int32, device=self.device)
        if norms:
            flag += (~torch.isfinite(torch.stack(norms))).any()
        dist.all_reduce(flag)
        if flag.item():  # the one read, on log / checkpoint / export steps only
            raise FloatingPointError(
                f"at or before step {step}: the optimizer applied an update with non-finite "
                f"values, so the weights are corrupt; the last good checkpoint is "
                f"{latest_checkpoint(self.ckpt_root)}")
