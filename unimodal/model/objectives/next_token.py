"""Raster next-token prediction over the codes of a T = 1 image tokenizer (plain VQ), in one file.

Training document:  <bos> prompt [<boi> c_1 c_2 ... c_{hw-1}]
    the bracket is the image block: <boi> and the first h*w - 1 codes of the one code map in
    raster order, as token ids (code_offset + c); position j of the block predicts c_{j+1}, so
    the block's h*w targets are exactly the h*w codes. Positions continue the prompt's.
Attention: causal within the image block (and causal to the prompt, like text).
Sampling: the prompts run once (cond and, for CFG, <null> as one doubled batch); the hidden state
    at <boi> gives c_1; then one position per step against a static KV cache, h*w - 1 steps:
    logits -> guidance -> top-k -> top-p -> Gumbel-max at temperature tau -> c_{i+1}.

Design choices, one line each:
- Codes embed through the backbone's token embedding of the vocabulary's code range (the ids the
  vocabulary already has), so the image input module has no weights and `embed` returns None.
- <boi> belongs to the image block: its target is the first code, scored by the block softmax
  over the K codes like every other code (never the full vocabulary).
- Logits over the K codes only: the code rows of the one output head (`code_head` = shared).
- Guidance rises linearly over the h*w positions with cfg_schedule=linear (lambda * i / (h*w)).
- One Gumbel generator per image, seeded by its seed, so an image does not depend on its batch.
- A tokenizer with T != 1 is refused when the objective is built (ConfigError naming code_maps).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from unimodal.model.document import IGNORE, Document
from unimodal.model.objectives import (ImageObjective, refuse_prefix, require_single_step,
                                      same_block)
from unimodal.model.sampling_rules import ImageSamplingConfig, sample_token_by_token
from unimodal.model.vocabulary import Vocabulary, image_prompt


# ------------------------------------------------------------------------ training documents
def raster_document(vocab: Vocabulary, prompt: list[int], codes: torch.Tensor,
                    prompt_targets: bool) -> Document:
    """Prompt (ending in <boi>) + codes (1, h, w) in raster order; <boi> joins the block."""
    flat = codes[0].flatten() + vocab.code_offset
    hw, p = flat.numel(), len(prompt)
    targets = prompt[1:] + [IGNORE] if prompt_targets else [IGNORE] * p
    targets[-1] = int(flat[0])                      # <boi> predicts the first code
    return Document(list(prompt) + flat[:-1].tolist(), targets + flat[1:].tolist(),
                    list(range(p + hw - 1)), [-1] * (p - 1) + [0] * hw,
                    [{"block_codes": codes}])


# ------------------------------------------------------------------------------------ modules
class CodeTokenInput(nn.Module):
    """Image positions embed their token ids (no weights here); code logits from the shared head."""

    def embed(self, batch: dict) -> None:
        return None                                 # the backbone's token embedding serves

    def code_logits(self, hidden: torch.Tensor, head_codes: torch.Tensor, ctx=None) -> torch.Tensor:
        return (hidden @ head_codes.t()).float()

    def load_tokenizer(self, tokenizer_state: dict[str, torch.Tensor]) -> None:
        pass                                        # nothing of the tokenizer is kept frozen here


# ----------------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample_codes(model, prompts: list[list[int]], cfg: ImageSamplingConfig,
                 seeds: list[int] | None = None) -> torch.Tensor:
    """Codes (B, 1, h, w) for B prompts (token ids ending in <boi>), one position per step."""
    cfg.validate()
    vocab = model.vocab
    b, (h, w) = len(prompts), vocab.grid
    hw = h * w
    seeds = seeds if seeds is not None else [cfg.image_seed(i) for i in range(b)]
    rows = prompts + [image_prompt(vocab)] * b if cfg.cfg_scale != 0 else prompts
    # The last position predicts the next code: c_{i+1} from the hidden state of position i.
    codes = sample_token_by_token(model, rows, b, hw, vocab.code_offset, model.code_logits, cfg,
                                  seeds)
    return codes.view(b, 1, h, w)


# ---------------------------------------------------------------------------------- objective
class NextTokenObjective(ImageObjective):
    """Raster next-token: the whole code map per document, h*w sequential steps to sample."""

    name = "next_token"

    def __init__(self, vocab: Vocabulary, latent_dim: int, **training_options):
        # blocks_per_image / step_weights are rdpm's; data/mixture.py checks they are not set.
        super().__init__(vocab, latent_dim)
        require_single_step(vocab, self.name)
        self.hw = vocab.grid[0] * vocab.grid[1]

    def draw_layout(self, rng: np.random.Generator) -> None:
        return None                                 # every document shows the whole image

    def image_length(self, layout: None) -> int:
        return self.hw - 1                          # <boi> is already counted in the prompt

    def image_document(self, prompt: list[int], prompt_targets: bool, codes: torch.Tensor,
                       seed: int, layout: None) -> Document:
        return raster_document(self.vocab, prompt, codes, prompt_targets)

    def empty_blocks(self) -> dict[str, torch.Tensor]:
        return {"block_codes": torch.zeros((0, 1, *self.vocab.grid), dtype=torch.long)}

    def describe(self, doc: Document) -> str:
        codes = doc.blocks[0]["block_codes"]
        return f"raster codes {tuple(codes.shape)}, first {codes[0, 0, :8].tolist()}"

    def build_input(self, tok_cfg, width: int, code_head: str, init_std: float) -> CodeTokenInput:
        return CodeTokenInput()

    @staticmethod
    def image_rule(block_ids: torch.Tensor, b, q_idx, kv_idx):
        """Causal within the query's own image block."""
        return same_block(block_ids, b, q_idx, kv_idx) & (kv_idx <= q_idx)

    def sample(self, model, prompts: list[list[int]], cfg: ImageSamplingConfig,
               seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        refuse_prefix(prefix, self.name)
        return sample_codes(model, prompts, cfg, seeds)
