"""RDPM diffusion quantizer: Algorithm 1 of the RDPM paper (docs/glossary.md, "Algorithm 1").

Design choices, one line each:
- Shape-agnostic: latents are (B, d, *grid) for any spatial rank (1-D audio, 2-D images, 3-D video).
- Schedules a_t: sin / linear / pow(phi); b_t = sqrt(1 - a_t^2); a_T = 1 for every schedule.
  `noise_scale` multiplies b_t (1 = the paper); below 1 it trades sampling noise for fidelity.
- Noise eps_t comes from a per-sample integer seed (`rdpm_noise`), so a tokenized sample is (codes, seed).
- Nearest code by Euclidean distance, computed in float32 even under autocast (argmin is fragile).
- Shared bias: one conv shared by all steps, v'_t = e_t + conv(e_t), zero-initialised so training
  starts from plain RDPM; decode only needs the codes, the codebook and this conv.
- Residual update z_{t+1} = z_t - sg(v'_t) (RQ-VAE style): each step's quant loss trains the
  codebook entry it picked and the encoder, not the earlier steps' picks.
- L_quant = sum_t gamma_t * mean((v_t - v'_t)^2), gamma_t = a_t (or 1), gradients to both sides
  (the paper's Eq. 4; equals codebook + commitment loss with beta = 1).
- Straight-through estimator over the whole chain: decoder input z + sg(z'_T - z).
- Dead codes (unused for `dead_code_after` training steps) are re-initialised from this batch's
  quantizer inputs v_t by `revive_dead_codes`, which the training loop calls after the forward:
  counts are all-reduced and new vectors broadcast there, so forward (and encode) never runs a
  collective or a host sync.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

SCHEDULES = ("sin", "linear", "pow")


def rdpm_schedule(kind: str, steps: int, phi: float = 0.75) -> torch.Tensor:
    """a_t for t = 1..T as a float64 tensor of shape (T,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    if kind == "sin":
        return torch.sin(math.pi / 2 * t / steps)
    if kind == "linear":
        return t / steps
    if kind == "pow":
        if not 0.0 < phi <= 1.0:
            raise ValueError(f"pow schedule needs 0 < phi <= 1, got {phi}")
        return torch.full_like(t, phi) ** (steps - t)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def rdpm_noise(seeds: Sequence[int] | torch.Tensor, steps: int, latent_shape: Sequence[int],
               device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """eps_1..eps_T for each sample, shape (B, T, *latent_shape).

    Generator (the contract every consumer relies on): for each sample,
    `torch.randn((T, *latent_shape), generator=torch.Generator("cpu").manual_seed(seed))` in float32.
    It always runs on the CPU so the noise is bit-identical whichever device encodes or trains;
    seeds are integers in [0, 2**63). Large batches are split over threads (each sample has its
    own generator, so the result does not depend on the split).
    """
    seeds = seeds.tolist() if isinstance(seeds, torch.Tensor) else [int(s) for s in seeds]
    for seed in seeds:
        if not 0 <= seed < 2**63:
            raise ValueError(f"noise seed must be in [0, 2**63), got {seed}")
    out = torch.empty((len(seeds), steps, *latent_shape), dtype=torch.float32)

    def fill(lo: int, hi: int) -> None:
        gen = torch.Generator("cpu")
        for i in range(lo, hi):
            gen.manual_seed(seeds[i])
            torch.randn((steps, *latent_shape), generator=gen, out=out[i])

    threads = min(8, os.cpu_count() or 1, len(seeds) // 16)
    if threads > 1:  # torch.randn releases the GIL
        bounds = [len(seeds) * k // threads for k in range(threads + 1)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fill, bounds[:-1], bounds[1:]))
    else:
        fill(0, len(seeds))
    return out.to(device=device, dtype=dtype, non_blocking=True)


def nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of `vectors` (N, d)."""
    with torch.autocast(vectors.device.type, enabled=False):
        v = vectors.float() if vectors.dtype != torch.float64 else vectors
        c = codebook.to(v.dtype)
        # |v|^2 is constant per row and cannot change the argmin, so it is left out.
        dist_sq = torch.addmm((c * c).sum(1), v, c.t(), beta=1.0, alpha=-2.0)
        return dist_sq.argmin(dim=1)


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, d, *grid) -> (B * prod(grid), d)."""
    return x.movedim(1, -1).reshape(-1, x.shape[1])


@dataclass
class QuantizerOutput:
    latent: torch.Tensor        # z'_T with straight-through gradient to the encoder, (B, d, *grid)
    codes: torch.Tensor         # C_1..C_T, int64 (B, T, *grid)
    loss: torch.Tensor          # weighted L_quant, scalar
    step_losses: torch.Tensor   # unweighted mean (v_t - v'_t)^2 per step, (T,), detached
    counts: torch.Tensor        # (K,) code histogram of this batch, all steps (summed over ranks
                                # once revive_dead_codes has run)
    inputs: list[torch.Tensor] = field(default_factory=list)  # v_t, detached; training only

    # On the device (no host sync): read them on log steps only.
    @property
    def usage(self) -> torch.Tensor:
        """Fraction of the K codes used in this batch."""
        return (self.counts > 0).float().mean()

    @property
    def perplexity(self) -> torch.Tensor:
        """exp(entropy) of the batch's code histogram."""
        probs = self.counts.float() / self.counts.sum().clamp_min(1)
        return torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())


class RDPMQuantizer(nn.Module):
    def __init__(self, codebook_size: int = 4096, dim: int = 32, steps: int = 10,
                 schedule: str = "pow", phi: float = 0.75, step_weighting: bool = True,
                 shared_bias: bool = True, spatial_rank: int = 2,
                 dead_code_after: int = 0, bias_kernel_size: int = 3, noise_scale: float = 1.0):
        super().__init__()
        self.codebook_size, self.dim, self.steps = codebook_size, dim, steps
        self.spatial_rank = spatial_rank
        # Plain Python floats (float64) so the schedule is exact in whatever dtype runs it.
        alphas = rdpm_schedule(schedule, steps, phi)
        self.alphas = tuple(alphas.tolist())
        self.betas = tuple((noise_scale * (1 - alphas**2).clamp_min(0).sqrt()).tolist())
        self.gammas = tuple(alphas.tolist()) if step_weighting else (1.0,) * steps
        # Unit-scale init matches the LayerNorm'd latent and the unit noise it is mixed with.
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        self.bias_conv: nn.Module | None = None
        if shared_bias:
            conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_rank]
            self.bias_conv = conv(dim, dim, bias_kernel_size, padding=bias_kernel_size // 2)
            nn.init.zeros_(self.bias_conv.weight)
            nn.init.zeros_(self.bias_conv.bias)
        self.dead_code_after = dead_code_after
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))

    # --- codes <-> latents -------------------------------------------------------------------
    def embed_step(self, codes_t: torch.Tensor) -> torch.Tensor:
        """v'_t from one code map (B, *grid): codebook row plus the shared-conv bias."""
        e = F.embedding(codes_t, self.codebook).movedim(-1, 1)
        return e + self.bias_conv(e) if self.bias_conv is not None else e

    def codes_to_latent(self, codes: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """z'_t = sum_{s<=t} v'_s from codes (B, T', *grid); `upto` = t (default all given steps)."""
        upto = codes.shape[1] if upto is None else upto
        latent = torch.zeros((codes.shape[0], self.dim, *codes.shape[2:]),
                             device=codes.device, dtype=self.codebook.dtype)
        for t in range(upto):
            latent = latent + self.embed_step(codes[:, t])
        return latent

    def noise(self, seeds, latent_shape, device=None) -> torch.Tensor:
        return rdpm_noise(seeds, self.steps, latent_shape, device=device)

    # --- Algorithm 1 -----------------------------------------------------------------------
    def forward(self, z: torch.Tensor, seeds=None, noise: torch.Tensor | None = None
                ) -> QuantizerOutput:
        if z.dim() != 2 + self.spatial_rank or z.shape[1] != self.dim:
            raise ValueError(f"quantizer expects latents (B, {self.dim}, *grid) with "
                             f"{self.spatial_rank} grid dims, got {tuple(z.shape)}")
        if noise is None:
            if seeds is None:
                raise ValueError("RDPMQuantizer needs `seeds` or `noise`")
            noise = self.noise(seeds, z.shape[1:], device=z.device)
        noise = noise.to(z.dtype)
        residual = z
        accum = torch.zeros_like(z)
        codes, losses, inputs = [], [], []
        for t in range(self.steps):
            v = self.alphas[t] * residual + self.betas[t] * noise[:, t]
            idx = nearest_code(_to_channels_last(v.detach()), self.codebook)
            idx = idx.view(v.shape[0], *v.shape[2:])
            v_q = self.embed_step(idx).to(z.dtype)
            losses.append(((v - v_q) ** 2).mean())
            accum = accum + v_q
            residual = residual - v_q.detach()
            codes.append(idx)
            inputs.append(v.detach())
        step_losses = torch.stack(losses)
        loss = sum(g * l for g, l in zip(self.gammas, losses))
        codes_t = torch.stack(codes, dim=1)
        latent = z + (accum - z).detach()
        counts = torch.bincount(codes_t.flatten(), minlength=self.codebook_size)
        keep_inputs = self.training and self.dead_code_after > 0
        return QuantizerOutput(latent, codes_t, loss, step_losses.detach(), counts,
                               inputs if keep_inputs else [])

    @torch.no_grad()
    def step_statistics(self, z: torch.Tensor, noise: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Per-step health of Algorithm 1 on latents z (B, d, *grid): ({name: (T,) tensor}, codes).

        residual_var: mean square of the residual z_t still to explain, before step t;
        input_var / content_var: mean square of v_t and of its image part a_t z_t;
        quant_error: mean (v_t - v'_t)^2; usage / perplexity: of step t's code histogram.
        Everything stays on the device: one host sync when the caller reads the result.
        """
        noise = noise.to(z.dtype)
        residual = z
        rows = {k: [] for k in ("residual_var", "input_var", "content_var", "quant_error",
                                "usage", "perplexity")}
        codes = []
        for t in range(self.steps):
            v = self.alphas[t] * residual + self.betas[t] * noise[:, t]
            idx = nearest_code(_to_channels_last(v), self.codebook).view(v.shape[0], *v.shape[2:])
            v_q = self.embed_step(idx).to(z.dtype)
            counts = torch.bincount(idx.flatten(), minlength=self.codebook_size).float()
            probs = counts / counts.sum()
            rows["residual_var"].append(residual.float().pow(2).mean())
            rows["input_var"].append(v.float().pow(2).mean())
            rows["content_var"].append((self.alphas[t] * residual.float()).pow(2).mean())
            rows["quant_error"].append((v - v_q).float().pow(2).mean())
            rows["usage"].append((counts > 0).float().mean())
            rows["perplexity"].append(torch.exp(-(probs * probs.clamp_min(1e-12).log()).sum()))
            residual = residual - v_q
            codes.append(idx)
        out = {k: torch.stack(v) for k, v in rows.items()}
        # |z - z'_T|^2: the error the decoder's input starts from.
        out["final_error"] = residual.float().pow(2).mean()[None]
        return out, torch.stack(codes, dim=1)

    @torch.no_grad()
    def revive_dead_codes(self, out: QuantizerOutput) -> None:
        """After a training forward: count steps each code went unused and move codes unused for
        `dead_code_after` steps onto random quantizer inputs of this batch. Under
        torch.distributed every rank must call it (it sums `out.counts` over ranks in place, and
        rank 0's new vectors are broadcast); the training loop does, the forward pass never runs
        collectives. No-op when dead_code_after = 0."""
        if self.dead_code_after <= 0:
            return
        if not out.inputs:
            raise ValueError("revive_dead_codes needs the output of a forward in training mode")
        counts, inputs = out.counts, out.inputs
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            dist.all_reduce(counts)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.steps_unused >= self.dead_code_after).nonzero().flatten()
        if dead.numel() > 0:
            pool = torch.cat([_to_channels_last(v) for v in inputs]).to(self.codebook.dtype)
            pool = pool[torch.isfinite(pool).all(1)]  # a non-finite batch must not poison codes
            if pool.shape[0] == 0:
                fresh = self.codebook.data[dead].clone()
            else:
                pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
                fresh = pool[pick]
            if distributed:
                dist.broadcast(fresh, src=0)
            self.codebook.data[dead] = fresh
            self.steps_unused[dead] = 0
