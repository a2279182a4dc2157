"""The pieces every image objective's sampler shares: the sampling options, classifier-free
guidance, Gumbel-max with top-k / top-p, and the prompt pass whose KV cache the image passes reuse.

Design choices, one line each:
- Guidance follows the RDPM paper: logits = cond + lambda_t * (cond - uncond); lambda_t = lambda
  (constant) or lambda * t / T ("CFG linear", the paper's best), t / T being the objective's pass
  over its passes (RDPM: step t of T; next_token: position i of h*w; masked: pass s of S).
  lambda = 0 skips the <null> pass.
- Gumbel-max: argmax(logits / tau + g), g ~ Gumbel(0, 1); tau = 1 samples the softmax exactly,
  tau -> 0 is argmax. (The paper writes the temperature as a multiplier of the logits.)
- Every draw of image i (its codes, the masked sampler's choice noise) comes from one generator
  seeded `seed + i`, in a fixed order, so an image does not depend on its batch.
- Prompts are left-padded; padding is masked out of attention and positions start at each
  prompt's first real token, so a batch gives the same codes as one prompt at a time.
- The model is duck-typed (`backbone`, `vocab`): this module sits below the unified model.
- Token-by-token samplers (text; `sample_token_by_token` for raster next-token images and audio /
  video codes) keep a static KV cache (`StaticKVCache`): allocated once at its final length,
  written in place, the unwritten slots masked. Every step then has one shape, so a compiled
  backbone compiles one step graph instead of one per length, and no step copies the whole cache
  as a concatenation would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass
class ImageSamplingConfig:
    cfg_scale: float = 4.0                # lambda; 0 = no guidance
    cfg_schedule: str = "linear"          # linear | constant
    temperature: float = 1.0              # tau; 0 = argmax
    top_k: int = 0                        # 0 = all codes
    top_p: float = 1.0                    # nucleus mass kept; 1 = all codes
    mask_steps: int = 12                  # S passes of the masked objective (MaskGIT)
    # MaskGIT's choice temperature: Gumbel noise on the masked sampler's confidences, annealed to 0
    # (its reference uses 4.5). 0 = deterministic confidence order, the sampler's behaviour before
    # this option: finished cells of a resumed study and saved runs keep meaning the same thing.
    mask_choice_temperature: float = 0.0
    seed: int = 0                         # image i uses noise seed `seed + i`

    def image_seed(self, index: int) -> int:
        """The noise seed of image `index` of a run (the one place the rule is written): it
        depends on the index only, not on batching, sharding or resuming."""
        return self.seed + index

    def validate(self, prefix: str = "sampling") -> None:
        if self.cfg_schedule not in ("linear", "constant"):
            raise ValueError(f"{prefix}.cfg_schedule={self.cfg_schedule!r}: linear or constant")
        # NaN passes every comparison, so check finiteness first (NaN guidance gives every class
        # the same image).
        for key in ("cfg_scale", "temperature", "mask_choice_temperature"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{prefix}.{key}={value}: must be a finite number >= 0")
        if self.top_k < 0:
            raise ValueError(f"{prefix}.top_k={self.top_k}: must be >= 0 (0 = all codes)")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"{prefix}.top_p={self.top_p}: must be in (0, 1] (1 = all codes)")
        if self.mask_steps < 1:
            raise ValueError(f"{prefix}.mask_steps={self.mask_steps}: must be >= 1")


def guidance_scale(cfg_scale: float, schedule: str, step: int, steps: int) -> float:
    return cfg_scale * step / steps if schedule == "linear" else cfg_scale


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return cond + scale * (cond - uncond)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > p  # keep the smallest prefix whose mass reaches p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def uniform_draws(shape: torch.Size, device: torch.device,
                  generator: torch.Generator | list[torch.Generator] | None = None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """U[0, 1) draws of `shape`; a list of generators draws row i from generator i (into `out`
    when given: a sampler reuses one buffer for every step)."""
    if not isinstance(generator, list):
        return torch.rand(shape, generator=generator, device=device, out=out)
    out = torch.empty(shape, device=device) if out is None else out
    for row, gen in zip(out, generator):
        torch.rand(shape[1:], generator=gen, device=device, out=row)
    return out


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0)))


def gumbel_noise(shape: torch.Size, device: torch.device,
                 generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Gumbel(0, 1) noise of `shape`; a list of generators draws row i from generator i."""
    return gumbel_from_uniform(uniform_draws(shape, device, generator))


def gumbel_argmax(logits: torch.Tensor, temperature: float,
                  uniforms: torch.Tensor | None) -> torch.Tensor:
    """argmax(logits / tau + Gumbel noise) given the noise's uniform draws (`uniform_draws`);
    tau = 0 is the argmax (no draws needed). Tensors only, so a compiled sampling step can fuse
    it with the logits it reads."""
    if temperature == 0:
        return logits.argmax(-1)
    return (logits / temperature + gumbel_from_uniform(uniforms)).argmax(-1)


def gumbel_sample(logits: torch.Tensor, temperature: float,
                  generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """argmax(logits / tau + Gumbel noise); a list of generators gives one per row of logits."""
    if temperature == 0:
        return logits.argmax(-1)
    return gumbel_argmax(logits, temperature, uniform_draws(logits.shape, logits.device, generator))


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), length), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p)
        valid[i, length - len(p):] = True
    positions = (valid.long().cumsum(1) - 1).clamp_min(0)
    return ids.to(device), valid.to(device), positions.to(device)


def _prompt_mask(valid: torch.Tensor) -> torch.Tensor:
    """Causal over real tokens, padding invisible; every row sees itself."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    return ((causal[None] & valid[:, None, :]) | eye[None])[:, None]


@torch.no_grad()
def run_prompts(model, prompts: list[list[int]]):
    """Prompt pass: (per-layer KV cache, valid mask, next position per row, last hidden state)."""
    device = model.backbone.head_weight.device
    ids, valid, positions = _left_pad(prompts, model.vocab.pad_id, device)
    hidden, cache = model.backbone(model.backbone.embed(ids), positions, _prompt_mask(valid))
    return cache, valid, positions[:, -1] + 1, hidden[:, -1]


def any_padding(prompts: list[list[int]]) -> bool:
    """Whether `run_prompts` left-pads any of these prompts (their lengths differ), known on the
    host without reading its `valid` mask back from the device."""
    return len({len(p) for p in prompts}) > 1


class BlockGeometry(NamedTuple):
    """Where an image block sits after its cached prompt: positions (rows, hw), the attention
    mask (None: unmasked) and, when asked for, the backbone's RoPE tables of the positions."""
    positions: torch.Tensor
    mask: torch.Tensor | None
    rope: tuple[torch.Tensor, torch.Tensor] | None = None


def block_rope(model):
    """The backbone's RoPE tables at the block inputs' dtype, as a function of the positions:
    `block_geometry`'s `rope`."""
    return lambda positions: model.backbone.rope(positions, model.backbone.head_weight.dtype)


def block_geometry(valid: torch.Tensor, next_pos: torch.Tensor, hw: int,
                   padded: bool | None = None, rope=None) -> BlockGeometry:
    """Positions (rows, hw) of an image block after the cached prompt (`run_prompts`), and its
    attention mask: block queries see their row's real prompt tokens and the whole block. The
    mask is None when no prompt is padded, so attention runs unmasked. Every pass over an image
    has the same geometry, so a sampler computes it once per batch. `padded`: `any_padding` of
    the prompts; None reads it from `valid` (a host sync). `rope`: a function of the positions
    (the backbone's `rope` at its dtype) whose tables are then computed here too, once."""
    rows, device = valid.shape[0], valid.device
    positions = next_pos[:, None] + torch.arange(hw, device=device)[None]
    tables = rope(positions) if rope is not None else None
    if not (bool((~valid).any()) if padded is None else padded):
        return BlockGeometry(positions, None, tables)
    keys = torch.cat([valid, torch.ones(rows, hw, dtype=torch.bool, device=device)], 1)
    return BlockGeometry(positions, keys[:, None, None, :].expand(rows, 1, hw, -1), tables)


def sampling_logits(logits: torch.Tensor, b: int, cfg: "ImageSamplingConfig", step: int,
                    steps: int) -> torch.Tensor:
    """The logits an image sampler draws from at `step` of `steps`: with guidance, rows [:b] are
    the prompts and rows [b:] their <null> twins (one doubled batch); then top-k and top-p."""
    scale = guidance_scale(cfg.cfg_scale, cfg.cfg_schedule, step, steps) if cfg.cfg_scale != 0 else None
    return guided_logits(logits, b, scale, cfg.top_k, cfg.top_p)


def guided_logits(logits: torch.Tensor, b: int, scale: float | torch.Tensor | None, top_k: int,
                  top_p: float) -> torch.Tensor:
    """`sampling_logits` with the guidance weight given (None: unguided); a tensor weight lets a
    compiled step serve every step with one graph."""
    if scale is not None:
        logits = guide(logits[:b], logits[b:], scale)
    return top_p_filter(top_k_filter(logits, top_k), top_p)


class StaticKVCache:
    """Per-layer keys and values of (rows, heads, prompt + slots, head_dim): the prompt pass's,
    then `slots` slots that step i of a token-by-token sampler fills, slot i with the token it
    feeds. `prefix` is what the backbone takes as `kv_prefix`; `key_mask(i)` its attention mask at
    step i (the real prompt tokens, slots 0..i-1, and the fed token itself, which the backbone
    appends after the prefix)."""

    def __init__(self, prompt_cache, valid: torch.Tensor, slots: int):
        def grow(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x.new_zeros(*x.shape[:2], slots, x.shape[3])], 2)
        self.prefix = [(grow(k), grow(v)) for k, v in prompt_cache]
        self.valid, self.prompt_len = valid, valid.shape[1]
        self.slots = torch.arange(slots, device=valid.device)
        self.fed = torch.ones(valid.shape[0], 1, dtype=torch.bool, device=valid.device)

    def key_mask(self, step: int) -> torch.Tensor:
        keys = torch.cat([self.valid, (self.slots < step).expand(self.valid.shape[0], -1),
                          self.fed], 1)
        return keys[:, None, None, :]

    def write(self, step: int, new_kv) -> None:
        """Slot `step` <- the fed token's keys and values (the backbone's `new_kv`)."""
        for (k, v), (new_k, new_v) in zip(self.prefix, new_kv):
            k[:, :, self.prompt_len + step] = new_k[:, :, 0]
            v[:, :, self.prompt_len + step] = new_v[:, :, 0]


@torch.no_grad()
def sample_token_by_token(model, rows: list[list[int]], b: int, length: int, code_offset: int,
                          code_logits, cfg: "ImageSamplingConfig", seeds: list[int]) -> torch.Tensor:
    """Codes (b, length) drawn one position per step: raster next-token images and the audio /
    video code sequences. `rows` are the b prompts, then (with guidance) their b <null> twins;
    `code_logits(hidden)` maps the last hidden states (rows, W) to code logits (rows, K); a drawn
    code c is fed back as token id code_offset + c. Sample i draws from a generator seeded
    seeds[i], guidance rises over the positions (t / T = position / length)."""
    device = model.backbone.head_weight.device
    prompt_cache, valid, next_pos, hidden = run_prompts(model, rows)
    cache = StaticKVCache(prompt_cache, valid, length - 1)
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    codes = []
    for i in range(length):
        logits = sampling_logits(code_logits(hidden), b, cfg, i + 1, length)
        code = gumbel_sample(logits, cfg.temperature, gens)
        codes.append(code)
        if i == length - 1:
            break
        ids = code + code_offset
        ids = torch.cat([ids, ids]) if len(rows) > b else ids
        out, new_kv = model.backbone(model.backbone.embed(ids[:, None]), next_pos[:, None],
                                     cache.key_mask(i), kv_prefix=cache.prefix)
        cache.write(i, new_kv)
        next_pos, hidden = next_pos + 1, out[:, -1]
    return torch.stack(codes, 1)
