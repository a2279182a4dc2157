"""Raw webdataset samples of each source kind -> training documents, with validation.

Kinds:
    text            ids.npy / txt / json (see text_shards.py) -> `<bos> text <eos>`, cut when too long
    class_images    codes.npy + seed.txt + cls  -> `<bos> <class_c> <boi>` + k blocks
    caption_images  codes.npy + seed.txt + txt  -> `<bos> caption <boi>` + k blocks
    caption_audio   codes.npy + seed.txt + txt  -> `<bos> caption <boa> codes <eoa> <eos>`
    caption_video   codes.npy + seed.txt + txt  -> `<bos> caption <bov> codes <eov> <eos>`

Design choices, one line each:
- Every field is checked before any work: codes must be (T, h, w) of the vocabulary with values in
  [0, K), the seed an integer in [0, 2^63), the class id in [0, C), the caption non-empty. A failure
  raises ValueError, which the caller counts as a bad sample of the source.
- The prompt becomes <null> with probability cfg_drop (classifier-free guidance).
- What an image document shows of its image is the image objective's (`model.image_objective`,
  `unimodal.model.objectives`): it draws the layout (RDPM: k blocks at distinct steps of 1..T,
  uniformly or by data.step_weights) and builds the image part.
- The length is checked before the image part is built: an image that cannot fit seq_len is
  dropped (DocumentTooLong) without paying for its noise; it is counted apart from bad data.
- Audio and video documents (`caption_{name}`, for the vocabulary's modality `name`) are plain
  next-token sequences: all T code maps, flattened map after map, as ids of the modality's code
  range, every position a target (the caption's only with caption_loss). They have no blocks: the
  model scores their codes with the full head, and a sampler restricts the softmax to the range.
- Randomness comes from the caller's numpy Generator, so a document is a pure function of the sample
  and that generator's state.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from unimodal.config import ConfigError
from unimodal.data.text_shards import text_pieces, text_sample_ids
from unimodal.model.document import IGNORE, Document
from unimodal.model.modalities import code_prompt
from unimodal.model.objectives import build_objective
from unimodal.model.vocabulary import Vocabulary, image_prompt

# Source kind -> the vocabulary modality whose codes its samples hold (further modalities).
CODE_KINDS = {"caption_audio": "audio", "caption_video": "video"}
KINDS = ("text", "class_images", "caption_images", *CODE_KINDS)


class DocumentTooLong(Exception):
    """A readable image sample whose document cannot fit one row; dropped and counted."""


def read_codes(raw: dict, vocab: Vocabulary, modality: str = "image") -> tuple[torch.Tensor, int]:
    """(codes int64 (T, *grid), noise seed) of a sample of `modality`, validated against the
    vocabulary."""
    for name in ("codes.npy", "seed.txt"):
        if name not in raw:
            raise ValueError(f"missing field {name}; fields {sorted(k for k in raw if not k.startswith('__'))}")
    codes = np.load(io.BytesIO(raw["codes.npy"]), allow_pickle=False)
    entry = vocab.modality(modality)
    expected = (entry.code_maps, *entry.grid)
    if codes.shape != expected or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes of shape {codes.shape} ({codes.dtype}), expected integer {expected}")
    if codes.min() < 0 or codes.max() >= entry.codebook_size:
        raise ValueError(f"codes outside [0, {entry.codebook_size}): [{codes.min()}, {codes.max()}]")
    seed = int(raw["seed.txt"].decode().strip())
    if not 0 <= seed < 2**63:
        raise ValueError(f"noise seed {seed} outside [0, 2^63)")
    return torch.from_numpy(codes.astype(np.int64)), seed


def code_document(vocab: Vocabulary, modality: str, prompt: list[int], codes: torch.Tensor,
                  prompt_targets: bool) -> Document:
    """`prompt` (ending in the modality's begin marker), the codes (T, *grid) map after map, then
    the end marker and <eos>, each position predicting the next; the prompt's own tokens are
    targets only when `prompt_targets`."""
    entry = vocab.modality(modality)
    seq = [*prompt, *(codes.flatten() + entry.code_offset).tolist(), entry.end_id, vocab.eos_id]
    targets = seq[1:] + [IGNORE]
    if not prompt_targets:  # the marker still predicts the first code
        targets[:len(prompt) - 1] = [IGNORE] * (len(prompt) - 1)
    return Document(seq, targets, list(range(len(seq))), [-1] * len(seq))


def code_document_length(vocab: Vocabulary, modality: str, prompt_length: int) -> int:
    entry = vocab.modality(modality)
    return prompt_length + entry.code_maps * entry.tokens_per_map + 2


def check_code_sources(sources, vocab: Vocabulary, seq_len: int, prefix: str = "data") -> None:
    """ConfigError naming the key when an audio / video source has no vocabulary modality, or
    its documents cannot fit seq_len even with a one-token prompt."""
    for i, source in enumerate(sources):
        if source.kind not in CODE_KINDS:
            continue
        name = CODE_KINDS[source.kind]
        if name not in {m.name for m in vocab.modalities}:
            raise ConfigError(f"{prefix}.sources[{i}].kind={source.kind} needs the code modality "
                              f"{name!r} in the vocabulary (model.vocab.modalities); it has "
                              f"{[m.name for m in vocab.modalities]}")
        need = code_document_length(vocab, name, 3)
        if need > seq_len:
            entry = vocab.modality(name)
            raise ConfigError(f"{prefix}.seq_len={seq_len}: a {name} document needs at least "
                              f"{need} tokens (<bos> prompt {entry.markers[0]} + {entry.code_maps} "
                              f"maps of {entry.tokens_per_map} codes + {entry.markers[1]} <eos>); "
                              "raise it")


class SampleDocuments:
    """Turns raw samples of one source kind into documents (a list: text may be cut in pieces)."""

    def __init__(self, kind: str, vocab: Vocabulary, latent_dim: int, seq_len: int,
                 blocks_per_image: int, cfg_drop: float, caption_loss: bool,
                 jsonl_field: str = "text", step_weights=(), image_objective: str = "rdpm"):
        if kind not in KINDS:
            raise ValueError(f"unknown source kind {kind!r}; choose one of {KINDS}")
        self.kind, self.vocab, self.seq_len = kind, vocab, seq_len
        self.cfg_drop, self.caption_loss = cfg_drop, caption_loss
        self.jsonl_field = jsonl_field
        self.objective = build_objective(image_objective, vocab, latent_dim,
                                         blocks_per_image=blocks_per_image,
                                         step_weights=step_weights)

    def __call__(self, raw: dict, rng: np.random.Generator) -> list[Document]:
        if self.kind == "text":
            ids = text_sample_ids(raw, self.vocab, self.jsonl_field)
            return text_pieces(self.vocab, ids, self.seq_len) if ids else []
        if self.kind in CODE_KINDS:
            return [self.modality_document(raw, CODE_KINDS[self.kind], rng)]
        codes, seed = read_codes(raw, self.vocab)
        caption, class_id = None, None
        if self.kind == "class_images":
            if "cls" not in raw:
                raise ValueError("missing field cls (class id)")
            class_id = int(raw["cls"].decode().strip())
            if not 0 <= class_id < self.vocab.num_classes:
                raise ValueError(f"class id {class_id} outside [0, {self.vocab.num_classes})")
        else:
            caption = read_caption(raw)
        drop = rng.random() < self.cfg_drop
        layout = self.objective.draw_layout(rng)
        if drop:
            prompt = image_prompt(self.vocab)
        else:
            prompt = image_prompt(self.vocab, caption=caption, class_id=class_id)
        image_length = self.objective.image_length(layout)
        if len(prompt) + image_length > self.seq_len:
            raise DocumentTooLong(f"prompt of {len(prompt)} + image of {image_length} positions "
                                  f"> seq_len {self.seq_len}")
        prompt_targets = self.caption_loss and caption is not None and not drop
        return [self.objective.image_document(prompt, prompt_targets, codes, seed, layout)]

    def modality_document(self, raw: dict, modality: str, rng: np.random.Generator) -> Document:
        codes, _ = read_codes(raw, self.vocab, modality)
        caption = read_caption(raw)
        drop = rng.random() < self.cfg_drop
        prompt = code_prompt(self.vocab, modality, None if drop else caption)
        length = code_document_length(self.vocab, modality, len(prompt))
        if length > self.seq_len:
            raise DocumentTooLong(f"{modality} document of {length} tokens > seq_len {self.seq_len}")
        return code_document(self.vocab, modality, prompt, codes, self.caption_loss and not drop)


def read_caption(raw: dict) -> str:
    caption = raw["txt"].decode("utf-8").strip() if "txt" in raw else ""
    if not caption:
        raise ValueError("missing or empty caption (txt)")
    return caption
