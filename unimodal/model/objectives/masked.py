"""MaskGIT-style masked-token prediction over the codes of a T = 1 image tokenizer, in one file.

Training document:  <bos> prompt <boi> | image(h*w)
    the image block holds the h*w positions of the one code map (positions continue the
    prompt's); a random subset is masked: input [MASK], target code_offset + c; the others
    input their code and have no target. Mask ratio r = cos(pi/2 * u), u ~ U(0, 1), at least one
    position masked (MaskGIT's cosine schedule).
Attention: bidirectional within the image block, causal to the prompt (like text).
Sampling in S = cfg.mask_steps passes: the prompts run once (cond and, for CFG, <null> as one
    doubled batch); each pass runs the h*w positions against the cached prompt, draws a code at
    every still-masked position (guidance -> top-k -> top-p -> Gumbel-max at temperature tau),
    keeps the most confident ones and re-masks the floor(h*w * cos(pi/2 * s / S)) least
    confident (at least one new code per pass; none left after pass S). Confidence of pass s:
    log p(drawn code) + c * (1 - s / S) * g, g ~ Gumbel(0, 1), c = sampling.mask_choice_temperature
    (MaskGIT's choice temperature; 0, the default, ranks by log p alone).

Design choices, one line each:
- The image input module owns an embedding of K + 1 rows (the K codes and [MASK] = row K) plus a
  learned embedding per image position (as MaskGIT: with RoPE alone, positions that all hold
  [MASK] look nearly alike); text ids of the image block are <pad> and never embedded as text.
- Which positions are masked is drawn in `draw_layout` from the loader's numpy generator, so a
  document is a pure function of the sample and the generator state.
- Confidence = the log-probability of the drawn code under the guided, filtered logits, plus
  MaskGIT's annealed choice noise when c > 0 (so early passes do not always fix the same easy
  positions); codes already fixed are never re-masked.
- The choice noise comes after the code draw from the same per-image generator, and is drawn
  only while c * (1 - s / S) > 0, so c = 0 leaves every draw (and code) as it was.
- Logits over the K codes only: the code rows of the one output head (`code_head` = shared).
- One Gumbel generator per image, seeded by its seed, so an image does not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from unimodal.model.document import IGNORE, Document
from unimodal.model.objectives import ImageObjective, refuse_prefix, require_single_step
from unimodal.model.sampling_rules import (ImageSamplingConfig, any_padding, block_geometry,
                                           block_rope, gumbel_noise, gumbel_sample, run_prompts,
                                           sampling_logits)
from unimodal.model.vocabulary import Vocabulary, image_prompt


# ------------------------------------------------------------------------ training documents
@dataclass
class MaskLayout:
    ratio: float                          # r = cos(pi/2 * u)
    masked: np.ndarray                    # (h*w,) bool, raster order


def draw_mask(rng: np.random.Generator, hw: int) -> MaskLayout:
    ratio = math.cos(math.pi / 2 * rng.random())
    count = min(hw, max(1, math.ceil(ratio * hw)))
    masked = np.zeros(hw, dtype=bool)
    masked[rng.permutation(hw)[:count]] = True
    return MaskLayout(ratio, masked)


def masked_document(vocab: Vocabulary, prompt: list[int], codes: torch.Tensor,
                    layout: MaskLayout, prompt_targets: bool) -> Document:
    """Prompt (ending in <boi>) + the h*w image positions; targets at the masked ones only."""
    flat = codes[0].flatten()
    hw, p = flat.numel(), len(prompt)
    masked = torch.from_numpy(layout.masked)
    targets = prompt[1:] + [IGNORE] if prompt_targets else [IGNORE] * p
    targets += torch.where(masked, flat + vocab.code_offset, IGNORE).tolist()
    return Document(list(prompt) + [vocab.pad_id] * hw, targets, list(range(p + hw)),
                    [-1] * p + [0] * hw,
                    [{"block_codes": codes, "block_masked": masked.view(codes.shape[1:])}])


# ------------------------------------------------------------------------------------ modules
class MaskedCodeInput(nn.Module):
    """Image positions embed their code, or [MASK] (row K); code logits from the shared head."""

    def __init__(self, codebook_size: int, positions: int, width: int):
        super().__init__()
        self.mask_id = codebook_size
        self.code_embed = nn.Embedding(codebook_size + 1, width)
        self.pos_embed = nn.Parameter(torch.zeros(positions, width))   # (h*w, width)

    def init_weights(self, std: float) -> None:
        nn.init.normal_(self.code_embed.weight, std=std)
        nn.init.normal_(self.pos_embed, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, h*w) in [0, K] (K = [MASK]) -> image inputs (N, h*w, width)."""
        return self.code_embed(tokens) + self.pos_embed

    def embed(self, batch: dict) -> tuple[torch.Tensor, None] | None:
        if "block_codes" not in batch or batch["block_codes"].shape[0] == 0:
            return None
        codes, masked = batch["block_codes"][:, 0].flatten(1), batch["block_masked"].flatten(1)
        return self(torch.where(masked, self.mask_id, codes)), None

    def code_logits(self, hidden: torch.Tensor, head_codes: torch.Tensor, ctx=None) -> torch.Tensor:
        return (hidden @ head_codes.t()).float()

    def load_tokenizer(self, tokenizer_state: dict[str, torch.Tensor]) -> None:
        pass                                        # nothing of the tokenizer is kept frozen here


# ----------------------------------------------------------------------------------- sampling
def still_masked(hw: int, step: int, steps: int) -> int:
    """Positions left masked after pass `step` of `steps` (cosine schedule; 0 after the last)."""
    return math.floor(hw * math.cos(math.pi / 2 * step / steps))


def choice_temperature_at(choice_temperature: float, step: int, steps: int) -> float:
    """MaskGIT's choice temperature at pass `step` of `steps`: linear from c * (1 - 1/S) at the
    first pass to 0 at the last (whose confidences re-mask nothing anyway)."""
    return choice_temperature * (1.0 - step / steps)


@torch.no_grad()
def sample_codes(model, prompts: list[list[int]], cfg: ImageSamplingConfig,
                 seeds: list[int] | None = None) -> torch.Tensor:
    """Codes (B, 1, h, w) for B prompts (token ids ending in <boi>), in cfg.mask_steps passes."""
    cfg.validate()
    vocab, module = model.vocab, model.image_input
    device = model.backbone.head_weight.device
    b, (h, w) = len(prompts), vocab.grid
    hw, steps = h * w, cfg.mask_steps
    seeds = seeds if seeds is not None else [cfg.image_seed(i) for i in range(b)]
    guided = cfg.cfg_scale != 0
    rows_prompts = prompts + [image_prompt(vocab)] * b if guided else prompts
    cache, valid, next_pos, _ = run_prompts(model, rows_prompts)
    rows = valid.shape[0]
    geometry = block_geometry(valid, next_pos, hw, any_padding(rows_prompts),
                              rope=block_rope(model))
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    tokens = torch.full((b, hw), module.mask_id, dtype=torch.long, device=device)
    for step in range(1, steps + 1):
        x = module(torch.cat([tokens, tokens]) if guided else tokens)
        hidden, _ = model.backbone(x.to(model.backbone.head_weight.dtype), geometry.positions,
                                   geometry.mask, kv_prefix=cache, rope=geometry.rope)
        logits = model.code_logits(hidden.flatten(0, 1)).view(rows, hw, -1)
        logits = sampling_logits(logits, b, cfg, step, steps)
        drawn = gumbel_sample(logits, cfg.temperature, gens)                     # (b, hw)
        open_ = tokens == module.mask_id
        confidence = logits.log_softmax(-1).gather(-1, drawn[..., None])[..., 0]
        noise_scale = choice_temperature_at(cfg.mask_choice_temperature, step, steps)
        if noise_scale > 0:
            confidence = confidence + noise_scale * gumbel_noise(confidence.shape, device, gens)
        confidence = confidence.masked_fill(~open_, float("inf"))
        left = min(still_masked(hw, step, steps), int(open_.sum(1).min()) - 1)
        remask = torch.zeros_like(open_)
        if left > 0:
            remask.scatter_(1, confidence.topk(left, dim=1, largest=False).indices, True)
        tokens = torch.where(open_ & ~remask, drawn, tokens)
    return tokens.view(b, 1, h, w)


# ---------------------------------------------------------------------------------- objective
class MaskedObjective(ImageObjective):
    """MaskGIT: a cosine-masked image per document, S bidirectional passes to sample."""

    name = "masked"

    def __init__(self, vocab: Vocabulary, latent_dim: int, **training_options):
        # blocks_per_image / step_weights are rdpm's; data/mixture.py checks they are not set.
        super().__init__(vocab, latent_dim)
        require_single_step(vocab, self.name)
        self.hw = vocab.grid[0] * vocab.grid[1]

    def draw_layout(self, rng: np.random.Generator) -> MaskLayout:
        return draw_mask(rng, self.hw)

    def image_length(self, layout: MaskLayout) -> int:
        return self.hw

    def image_document(self, prompt: list[int], prompt_targets: bool, codes: torch.Tensor,
                       seed: int, layout: MaskLayout) -> Document:
        return masked_document(self.vocab, prompt, codes, layout, prompt_targets)

    def empty_blocks(self) -> dict[str, torch.Tensor]:
        grid = self.vocab.grid
        return {"block_codes": torch.zeros((0, 1, *grid), dtype=torch.long),
                "block_masked": torch.zeros((0, *grid), dtype=torch.bool)}

    def describe(self, doc: Document) -> str:
        block = doc.blocks[0]
        return (f"masked {int(block['block_masked'].sum())}/{self.hw} codes, "
                f"codes {tuple(block['block_codes'].shape)}")

    def build_input(self, tok_cfg, width: int, code_head: str, init_std: float) -> MaskedCodeInput:
        module = MaskedCodeInput(tok_cfg.codebook_size, self.hw, width)
        module.init_weights(init_std)
        return module

    # image_rule: the base class's, bidirectional within the query's own block.

    def sample(self, model, prompts: list[list[int]], cfg: ImageSamplingConfig,
               seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        refuse_prefix(prefix, self.name)
        return sample_codes(model, prompts, cfg, seeds)
