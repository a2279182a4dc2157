"""Training sequences of the unified model: documents, and packing them into fixed-length rows.

A text document:   <bos> t_1 ... t_n <eos>           targets: the next token
An image document: <bos> prompt <boi> | block(t_1) | ... | block(t_k)
    prompt = a caption, a class token or <null>; each block holds the h*w positions of one step t,
    with positions prefix_len .. prefix_len + h*w - 1 (every block of an image reuses them), input
    proj(concat(z'_{t-1}, eps_t)) built in the model, target code_offset + C_t[i].

Design choices, one line each:
- eps_t is regenerated here from the sample's seed (CPU, `rdpm_noise`), i.e. in loader workers.
- Prompt tokens of captions are text targets (the model also learns captions); class tokens and
  <null> are not (predicting a random class label is noise in the loss).
- Packing is greedy in order; a document never straddles two rows; padding has doc id -1 and no
  target. Block ids are numbered in flattened (row-major) order, which is the order
  `UnifiedModel.embed_sequence` scatters block inputs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unimodal.model.vocabulary import Vocabulary
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise

IGNORE = -100


@dataclass
class Document:
    input_ids: list[int]
    targets: list[int]
    position_ids: list[int]
    block_of: list[int]                  # -1 for text, else index into `blocks`
    blocks: list[tuple[torch.Tensor, int, torch.Tensor]] = field(default_factory=list)
    # each block: (codes (T, h, w) long, step t in 1..T, eps_t (d, h, w))

    def __len__(self) -> int:
        return len(self.input_ids)


def text_document(vocab: Vocabulary, ids: list[int]) -> Document:
    seq = [vocab.bos_id, *ids, vocab.eos_id]
    return Document(seq, seq[1:] + [IGNORE], list(range(len(seq))), [-1] * len(seq))


def image_document(vocab: Vocabulary, prompt: list[int], codes: torch.Tensor, seed: int,
                   steps: list[int], latent_dim: int, prompt_targets: bool) -> Document:
    """Prompt then one block per step in `steps` (1-based), codes (T, h, w)."""
    big_t, h, w = codes.shape
    noise = rdpm_noise([seed], big_t, (latent_dim, h, w))[0]
    p = len(prompt)
    targets = prompt[1:] + [IGNORE] if prompt_targets else [IGNORE] * p
    doc = Document(list(prompt), targets, list(range(p)), [-1] * p)
    hw = h * w
    for t in steps:
        if not 1 <= t <= big_t:
            raise ValueError(f"block step {t} outside 1..{big_t}")
        doc.blocks.append((codes, t, noise[t - 1]))
        doc.input_ids += [vocab.pad_id] * hw
        doc.targets += (codes[t - 1].flatten() + vocab.code_offset).tolist()
        doc.position_ids += list(range(p, p + hw))
        doc.block_of += [len(doc.blocks) - 1] * hw
    return doc


def pack_documents(docs: list[Document], seq_len: int, rows: int | None = None,
                   pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Greedy packing into (rows, seq_len); documents longer than seq_len raise ValueError."""
    packed: list[list[Document]] = [[]]
    used = 0
    for doc in docs:
        if len(doc) > seq_len:
            raise ValueError(f"document of {len(doc)} tokens does not fit seq_len={seq_len}")
        if used + len(doc) > seq_len:
            packed.append([])
            used = 0
        packed[-1].append(doc)
        used += len(doc)
    rows = rows or len(packed)
    if len(packed) > rows:
        raise ValueError(f"{len(docs)} documents need {len(packed)} rows, only {rows} given")
    shape = (rows, seq_len)
    out = {"input_ids": torch.full(shape, pad_id), "targets": torch.full(shape, IGNORE),
           "position_ids": torch.zeros(shape, dtype=torch.long),
           "doc_ids": torch.full(shape, -1), "block_ids": torch.full(shape, -1)}
    codes, steps, noise = [], [], []
    for r, row in enumerate(packed):
        start = 0
        for d, doc in enumerate(row):
            end = start + len(doc)
            out["input_ids"][r, start:end] = torch.tensor(doc.input_ids)
            out["targets"][r, start:end] = torch.tensor(doc.targets)
            out["position_ids"][r, start:end] = torch.tensor(doc.position_ids)
            out["doc_ids"][r, start:end] = d
            local = torch.tensor(doc.block_of)
            out["block_ids"][r, start:end] = torch.where(local >= 0, local + len(codes), -1)
            for block_codes, t, eps in doc.blocks:
                codes.append(block_codes)
                steps.append(t)
                noise.append(eps)
            start = end
    if codes:
        out.update(block_codes=torch.stack(codes), block_steps=torch.tensor(steps),
                   block_noise=torch.stack(noise))
    return out
