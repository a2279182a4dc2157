"""Raw webdataset samples of each source kind -> training documents, with validation.

Kinds:
    text            ids.npy / txt / json (see text_shards.py) -> `<bos> text <eos>`, cut when too long
    class_images    codes.npy + seed.txt + cls  -> `<bos> <class_c> <boi>` + k blocks
    caption_images  codes.npy + seed.txt + txt  -> `<bos> caption <boi>` + k blocks

Design choices, one line each:
- Every field is checked before any work: codes must be (T, h, w) of the vocabulary with values in
  [0, K), the seed an integer in [0, 2^63), the class id in [0, C), the caption non-empty. A failure
  raises ValueError, which the caller counts as a bad sample of the source.
- The prompt becomes <null> with probability cfg_drop (classifier-free guidance).
- k blocks at distinct steps drawn from 1..T, in increasing order: uniformly, or with
  data.step_weights one after the other with probability proportional to the weights of the steps
  not yet drawn (draw_steps); equal weights are the uniform draw, the same random stream.
- The length is checked before the noise is generated: an image that cannot fit seq_len is dropped
  (DocumentTooLong) without paying for its noise; it is counted apart from bad data.
- Randomness comes from the caller's numpy Generator, so a document is a pure function of the sample
  and that generator's state.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from unimodal.data.sequences import Document, image_document
from unimodal.model.vocabulary import image_prompt
from unimodal.data.text_shards import text_pieces, text_sample_ids
from unimodal.model.vocabulary import Vocabulary

KINDS = ("text", "class_images", "caption_images")


class DocumentTooLong(Exception):
    """A readable image sample whose document cannot fit one row; dropped and counted."""


def read_codes(raw: dict, vocab: Vocabulary) -> tuple[torch.Tensor, int]:
    """(codes int64 (T, h, w), noise seed) of an image sample, validated against the vocabulary."""
    for name in ("codes.npy", "seed.txt"):
        if name not in raw:
            raise ValueError(f"missing field {name}; fields {sorted(k for k in raw if not k.startswith('__'))}")
    codes = np.load(io.BytesIO(raw["codes.npy"]), allow_pickle=False)
    expected = (vocab.steps, *vocab.grid)
    if codes.shape != expected or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes of shape {codes.shape} ({codes.dtype}), expected integer {expected}")
    if codes.min() < 0 or codes.max() >= vocab.codebook_size:
        raise ValueError(f"codes outside [0, {vocab.codebook_size}): [{codes.min()}, {codes.max()}]")
    seed = int(raw["seed.txt"].decode().strip())
    if not 0 <= seed < 2**63:
        raise ValueError(f"noise seed {seed} outside [0, 2^63)")
    return torch.from_numpy(codes.astype(np.int64)), seed


def step_probabilities(weights, steps: int) -> np.ndarray | None:
    """data.step_weights -> probabilities over steps 1..T; None = uniform (empty or all equal)."""
    if not len(weights) or (len(set(weights)) == 1 and weights[0] > 0):
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (steps,) or not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"step weights {list(weights)}: need {steps} finite values >= 0")
    return w / w.sum()


def draw_steps(rng: np.random.Generator, steps: int, k: int,
               probs: np.ndarray | None = None) -> list[int]:
    """k distinct steps of 1..T in increasing order; with probs, each draw picks one of the steps
    left with probability proportional to its weight. probs=None is the original uniform draw."""
    if probs is None:
        return np.sort(rng.choice(steps, size=k, replace=False) + 1).tolist()
    return np.sort(rng.choice(steps, size=k, replace=False, p=probs) + 1).tolist()


class SampleDocuments:
    """Turns raw samples of one source kind into documents (a list: text may be cut in pieces)."""

    def __init__(self, kind: str, vocab: Vocabulary, latent_dim: int, seq_len: int,
                 blocks_per_image: int, cfg_drop: float, caption_loss: bool,
                 jsonl_field: str = "text", step_weights=()):
        if kind not in KINDS:
            raise ValueError(f"unknown source kind {kind!r}; choose one of {KINDS}")
        self.kind, self.vocab, self.latent_dim, self.seq_len = kind, vocab, latent_dim, seq_len
        self.k, self.cfg_drop, self.caption_loss = blocks_per_image, cfg_drop, caption_loss
        self.jsonl_field = jsonl_field
        self.block_len = vocab.grid[0] * vocab.grid[1]
        self.step_probs = step_probabilities(step_weights, vocab.steps)

    def __call__(self, raw: dict, rng: np.random.Generator) -> list[Document]:
        if self.kind == "text":
            ids = text_sample_ids(raw, self.vocab, self.jsonl_field)
            return text_pieces(self.vocab, ids, self.seq_len) if ids else []
        codes, seed = read_codes(raw, self.vocab)
        caption, class_id = None, None
        if self.kind == "class_images":
            if "cls" not in raw:
                raise ValueError("missing field cls (class id)")
            class_id = int(raw["cls"].decode().strip())
            if not 0 <= class_id < self.vocab.num_classes:
                raise ValueError(f"class id {class_id} outside [0, {self.vocab.num_classes})")
        else:
            caption = raw["txt"].decode("utf-8").strip() if "txt" in raw else ""
            if not caption:
                raise ValueError("missing or empty caption (txt)")
        drop = rng.random() < self.cfg_drop
        steps = draw_steps(rng, self.vocab.steps, self.k, self.step_probs)
        if drop:
            prompt = image_prompt(self.vocab)
        else:
            prompt = image_prompt(self.vocab, caption=caption, class_id=class_id)
        if len(prompt) + self.k * self.block_len > self.seq_len:
            raise DocumentTooLong(f"prompt of {len(prompt)} + {self.k} blocks of "
                                  f"{self.block_len} > seq_len {self.seq_len}")
        prompt_targets = self.caption_loss and caption is not None and not drop
        return [image_document(self.vocab, prompt, codes, seed, steps, self.latent_dim,
                               prompt_targets)]
