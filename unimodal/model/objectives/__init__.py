"""Image objectives: how the unified model learns and samples image codes, one class per file.

The backbone, the loss, the vocabulary and the packing of documents are shared; an image
objective decides everything image-specific, in one place:

    training documents   which part of an image a document shows and how it is laid out
                         (inputs, targets, positions, block ids), built in loader workers
    modules              the image input (what an image position embeds) and code head
                         (how its code logits are formed), saved as image_input.safetensors
    attention            its contribution to the mask_mod: which image keys an image query sees
    sampling             how codes are drawn from prompts (given ImageSamplingConfig)

Chosen by `model.image_objective` (the unified model's config); `IMAGE_OBJECTIVES` maps the name
to the class. Adding one = one file here + one registry entry. A new objective subclasses
`ImageObjective` and implements:

    draw_layout(rng)            the random choice of what a training document sees of an image
                                (RDPM: k distinct steps), from the caller's numpy Generator
    image_length(layout)        positions its image part takes (documents too long for a row
                                are dropped before paying for noise)
    image_document(prompt, prompt_targets, codes, seed, layout) -> Document
                                the prompt plus the image part: input ids, targets, positions,
                                block ids, and per-block input tensors (`Document.blocks`)
    empty_blocks()              the per-block batch keys of a batch without images (N = 0)
    describe(doc)               one line about a document's image part (mixing/inspect.py)
    build_input(tok_cfg, width, code_head, init_std) -> nn.Module
                                its modules; the module provides `embed(batch)` ->
                                (image inputs (N, n, width), per-position context with
                                `select(rows)`) or None, `code_logits(hidden, head_codes, ctx)`
                                -> float32 (M, K), and `load_tokenizer(state)`
    block_positions(batch)      M, the image positions of a packed batch, from tensor shapes
                                (default: h*w per `block_codes` entry; override if not so)
    image_rule(block_ids, b, q_idx, kv_idx)
                                the mask_mod contribution (see attention_mask.py)
    sample(model, prompts, cfg, seeds, prefix) -> codes (B, T, h, w)

The objectives, one file each:

    rdpm        (rdpm.py) the RDPM paper's Markov recurrent code prediction over T code maps:
                k blocks of random steps per document, block-bidirectional, T block passes to sample
    next_token  (next_token.py) raster next-token over T = 1 codes: <boi> + codes as token ids,
                causal within the image, h*w one-position steps against a static KV cache
    masked      (masked.py) MaskGIT-style masked tokens over T = 1 codes: cosine-masked image,
                bidirectional within the image, S = sampling.mask_steps passes that keep the
                most confident codes
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn

from unimodal.config import ConfigError
from unimodal.model.attention_mask import unified_mask_mod
from unimodal.model.document import Document
from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.model.vocabulary import Vocabulary


def same_block(block_ids: torch.Tensor, b, q_idx, kv_idx):
    """Query and key sit in the same image block (block id >= 0): the image rules build on it."""
    return (block_ids[b, q_idx] == block_ids[b, kv_idx]) & (block_ids[b, q_idx] >= 0)


def require_single_step(vocab: Vocabulary, objective: str) -> None:
    """The token objectives model one code map: the image tokenizer must have T = 1 code map."""
    if vocab.code_maps != 1:
        raise ConfigError(f"model.image_objective={objective!r} needs an image tokenizer with "
                          f"code_maps=1 (T = 1, plain VQ), but the vocabulary has "
                          f"code_maps={vocab.code_maps} (T, read from model.image_tokenizer); "
                          "train the tokenizer with model.code_maps=1 or use "
                          "model.image_objective=rdpm")


def refuse_prefix(prefix: torch.Tensor | None, objective: str) -> None:
    if prefix is not None:
        raise ValueError(f"prefix (oracle codes for the first steps) is an rdpm diagnostic; "
                         f"model.image_objective={objective!r} has T = 1")


class ImageObjective:
    """The interface of an image objective (see the module docstring). Instances are cheap and
    hold no weights: data loader workers build one per source, the model one per model."""

    name: ClassVar[str]
    CODE_HEADS: ClassVar[tuple[str, ...]] = ("shared",)   # the model.code_head values it supports

    def __init__(self, vocab: Vocabulary, latent_dim: int, **training_options):
        self.vocab, self.latent_dim = vocab, latent_dim

    # training documents (CPU, loader workers) -----------------------------------------------
    def draw_layout(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def image_length(self, layout: Any) -> int:
        raise NotImplementedError

    def image_document(self, prompt: list[int], prompt_targets: bool, codes: torch.Tensor,
                       seed: int, layout: Any) -> Document:
        raise NotImplementedError

    def empty_blocks(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self, doc: Document) -> str:
        raise NotImplementedError

    # model ----------------------------------------------------------------------------------
    def build_input(self, tok_cfg, width: int, code_head: str, init_std: float) -> nn.Module:
        raise NotImplementedError

    def block_positions(self, batch: dict) -> int:
        """How many positions of a packed batch are image positions (block id >= 0), from the
        shapes of its block tensors: a host int, so the model's loss reads nothing from the device.
        Default: one position per code of each `block_codes` entry (N entries of h x w codes)."""
        codes = batch.get("block_codes")
        return 0 if codes is None else codes.shape[0] * codes.shape[-2] * codes.shape[-1]

    @staticmethod
    def image_rule(block_ids: torch.Tensor, b, q_idx, kv_idx):
        """Default: bidirectional within the query's own image block (other blocks hidden)."""
        return same_block(block_ids, b, q_idx, kv_idx)

    def mask_mod(self, doc_ids: torch.Tensor, block_ids: torch.Tensor):
        """The full flex_attention mask_mod: the shared text/document rule plus `image_rule`."""
        return unified_mask_mod(doc_ids, block_ids, self.image_rule)

    # generation -----------------------------------------------------------------------------
    def sample(self, model, prompts: list[list[int]], cfg: ImageSamplingConfig,
               seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def compile_sampling_step(self, mode: str | None) -> None:
        """torch.compile the objective's per-step sampling work beyond the backbone, with
        torch.compile `mode` (compile_for_sampling). Default: nothing more to compile."""


# The objectives subclass the above, so they are imported after it.
from unimodal.model.objectives.masked import MaskedObjective  # noqa: E402
from unimodal.model.objectives.next_token import NextTokenObjective  # noqa: E402
from unimodal.model.objectives.rdpm import RDPMObjective  # noqa: E402

IMAGE_OBJECTIVES: dict[str, type[ImageObjective]] = {"rdpm": RDPMObjective,
                                                     "next_token": NextTokenObjective,
                                                     "masked": MaskedObjective}


def objective_class(name: str, key: str = "model.image_objective") -> type[ImageObjective]:
    """The registered class of `name`; ConfigError naming `key` and the known names otherwise."""
    if name not in IMAGE_OBJECTIVES:
        raise ConfigError(f"{key}={name!r}: unknown image objective; choose one of "
                          f"{sorted(IMAGE_OBJECTIVES)}")
    return IMAGE_OBJECTIVES[name]


def build_objective(name: str, vocab: Vocabulary, latent_dim: int,
                    key: str = "model.image_objective", **training_options) -> ImageObjective:
    return objective_class(name, key)(vocab, latent_dim, **training_options)
