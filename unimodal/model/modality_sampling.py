"""Sampling a further code modality (audio, video): captions in, the tokenizer's signals out.

    codes = sample_modality_codes(model, "audio", ["three rising notes, square wave"], cfg)
    clips = generate_modality(model, audio_tokenizer, "audio", captions, cfg)   # (N, 1, samples)

Design choices, one line each:
- The documents are plain next-token sequences (`code_prompt`, then the T maps flattened map
  after map), so sampling is the text loop: the prompts run once, then one position per step,
  T * prod(grid) steps (800 for 2 s of audio, 2048 for a video clip).
- The loop is `sample_token_by_token` (sampling_rules.py), shared with the raster next-token
  image objective: a static KV cache, one shape per step, so `compile=true` compiles one step graph.
- Every step's logits are the head rows of the modality's codes only (`code_slice`): the same
  distribution as full-vocabulary logits plus `additive_logits_mask`, without the other rows, so
  a text id, a marker or another modality's code can never be drawn.
- Options are the image sampler's (`ImageSamplingConfig`, the `sampling.*` keys): guidance
  against the <null> prompt (trained by data.cfg_drop) rising linearly over the positions with
  cfg_schedule=linear, top-k, top-p, Gumbel-max at temperature tau (0 = greedy).
- Sample i draws from one generator seeded cfg.image_seed(i), so it does not depend on its batch.
"""

from __future__ import annotations

import torch

from unimodal.model.modalities import code_prompt
from unimodal.model.sampling_rules import ImageSamplingConfig, sample_token_by_token


def check_modality_prompts(model, name: str, captions: list[str]) -> None:
    """ValueError before any sampling: unknown modality, empty captions, or a prompt that leaves
    no room in the context for the T * prod(grid) codes."""
    modality = model.vocab.modality(name)  # names the modalities there are
    if not captions:
        raise ValueError(f"nothing to sample: give prompts for modality={name}")
    room = model.backbone.config.max_position_embeddings - modality.code_maps * modality.tokens_per_map
    for i, caption in enumerate(captions):
        if not caption.strip():
            raise ValueError(f"prompt {i} is empty")
        length = len(code_prompt(model.vocab, name, caption))
        if length > room:
            raise ValueError(f"prompt {i} is {length} tokens; the model's context leaves {room} "
                             f"for a prompt before the {name} codes: shorten it")


@torch.no_grad()
def sample_modality_codes(model, name: str, captions: list[str], cfg: ImageSamplingConfig,
                          seeds: list[int] | None = None) -> torch.Tensor:
    """Codes (B, T, *grid) in [0, K) of modality `name`, one per caption."""
    cfg.validate()
    check_modality_prompts(model, name, captions)
    modality = model.vocab.modality(name)
    b, length = len(captions), modality.code_maps * modality.tokens_per_map
    seeds = seeds if seeds is not None else [cfg.image_seed(i) for i in range(b)]
    prompts = [code_prompt(model.vocab, name, c) for c in captions]
    rows = prompts + [code_prompt(model.vocab, name)] * b if cfg.cfg_scale != 0 else prompts
    head = model.backbone.head_weight[modality.code_slice]
    codes = sample_token_by_token(model, rows, b, length, modality.code_offset,
                                  lambda hidden: (hidden @ head.t()).float(), cfg, seeds)
    return codes.view(b, modality.code_maps, *modality.grid)


@torch.no_grad()
def generate_modality(model, tokenizer, name: str, captions: list[str], cfg: ImageSamplingConfig,
                      batch_size: int = 32, progress=None) -> torch.Tensor:
    """Decoded samples (N, *tokenizer input shape) in [-1, 1] on the CPU, sample i seeded
    cfg.image_seed(i) whatever the batching."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    tok = tokenizer.cfg
    model.vocab.check_tokenizer(name, tok.codebook_size, tok.code_maps, tok.grid)
    check_modality_prompts(model, name, captions)
    out = []
    for start in range(0, len(captions), batch_size):
        chunk = captions[start:start + batch_size]
        seeds = [cfg.image_seed(start + i) for i in range(len(chunk))]
        codes = sample_modality_codes(model, name, chunk, cfg, seeds)
        out.append(tokenizer.decode(codes).float().clamp(-1, 1).cpu())
        if progress is not None:
            progress.update(len(chunk))
    return torch.cat(out)
