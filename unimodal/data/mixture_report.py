"""What a data mixture really delivers: shares in samples and tokens, and readable examples.

Used by mixing/inspect.py (and mixing/benchmark.py for the counting).

Design choices, one line each:
- Shares are measured on the real stream (PackedBatchStream, the configured workers), from the
  per-batch `source_tokens` / `source_samples` counts, not computed from the weights.
- Token shares count placed tokens (padding excluded); the padding share is reported on its own.
- Examples come from reader 0 of rank 0 (MixtureStream.draw), decoded: text as text, an image as
  its prompt (caption, class token or <null>), its k steps and the code-map shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from unimodal.config import ConfigError
from unimodal.data.mixture import DataConfig, MixtureStream, PackedBatchStream
from unimodal.model.document import Document
from unimodal.model.objectives import ImageObjective
from unimodal.model.vocabulary import Vocabulary


@dataclass
class InspectConfig:
    vocab: str = ""               # vocabulary folder written by Vocabulary.save
    image_tokenizer: str = ""     # tokenizer folder (for the latent dim d); or set latent_dim
    latent_dim: int = 0           # d of the image tokenizer, when image_tokenizer is empty
    data: DataConfig = field(default_factory=DataConfig)
    batches: int = 100            # packed batches the shares are measured over
    examples: int = 2             # decoded samples shown per source

    def validate(self) -> None:
        if not self.vocab:
            raise ConfigError("vocab: required, a vocabulary folder (Vocabulary.save)")
        if not (Path(self.vocab) / "vocabulary.json").is_file():
            raise ConfigError(f"vocab={self.vocab!r}: no vocabulary.json there")
        if not self.image_tokenizer and self.latent_dim < 1:
            raise ConfigError("image_tokenizer or latent_dim: give the image tokenizer folder or "
                              "its latent dim d (latent_dim >= 1)")
        if self.image_tokenizer and not Path(self.image_tokenizer).is_dir():
            raise ConfigError(f"image_tokenizer={self.image_tokenizer!r}: folder not found")
        for key in ("batches", "examples"):
            if getattr(self, key) < (1 if key == "batches" else 0):
                raise ConfigError(f"{key}={getattr(self, key)}: too small")
        self.data.validate("data")

    def resolved_latent_dim(self) -> int:
        if not self.image_tokenizer:
            return self.latent_dim
        from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer

        return load_tokenizer(self.image_tokenizer).cfg.latent_dim


def measure_mixture(stream: PackedBatchStream, batches: int) -> dict:
    """Sum the per-source counts of `batches` batches of the stream."""
    sources = len(stream.cfg.sources)
    tokens, samples = torch.zeros(sources, dtype=torch.long), torch.zeros(sources, dtype=torch.long)
    positions = 0
    for _, batch in zip(range(batches), stream):
        tokens += batch["source_tokens"]
        samples += batch["source_samples"]
        positions += batch["input_ids"].numel()
    return {"tokens": tokens.tolist(), "samples": samples.tolist(), "positions": positions,
            "batches": batches}


def mixture_table(cfg: DataConfig, stats: dict) -> str:
    weights = [s.weight for s in cfg.sources]
    total_w, total_s = sum(weights), max(sum(stats["samples"]), 1)
    total_t = max(sum(stats["tokens"]), 1)
    rows = [f"{'source':<16} {'kind':<15} {'weight%':>7} {'samples%':>8} {'tokens%':>8} "
            f"{'tokens':>10} {'tok/sample':>10}"]
    for s, w, n, t in zip(cfg.sources, weights, stats["samples"], stats["tokens"]):
        rows.append(f"{s.name:<16} {s.kind:<15} {w / total_w:>7.1%} {n / total_s:>8.1%} "
                    f"{t / total_t:>8.1%} {t:>10d} {t / max(n, 1):>10.1f}")
    padding = 1 - sum(stats["tokens"]) / max(stats["positions"], 1)
    rows.append(f"{stats['batches']} batches, {stats['positions']} positions, {sum(stats['samples'])}"
                f" samples, padding {padding:.1%}")
    return "\n".join(rows)


def describe_document(vocab: Vocabulary, doc: Document, objective: ImageObjective,
                      max_chars: int = 200) -> str:
    for modality in vocab.modalities[1:]:  # audio, video: a plain sequence after their marker
        if modality.begin_id in doc.input_ids:
            caption = vocab.decode_text(doc.input_ids)
            return (f"{modality.name}, {len(doc)} tokens: caption {caption!r}, "
                    f"{modality.code_maps} maps of {'x'.join(map(str, modality.grid))} codes")
    if not doc.blocks:
        text = vocab.decode_text(doc.input_ids)
        text = text if len(text) <= max_chars else text[:max_chars] + "..."
        return f"text, {len(doc)} tokens: {text!r}"
    prompt = doc.input_ids[:doc.block_of.index(0)]
    specials = {vocab.null_id: "<null>", vocab.bos_id: "<bos>", vocab.boi_id: "<boi>"}
    specials.update({vocab.class_token(c): f"<class_{c}>" for c in range(vocab.num_classes)})
    shown = " ".join(specials.get(i, "") for i in prompt if i in specials)
    caption = vocab.decode_text(prompt)
    return (f"image, {len(doc)} tokens: prompt {shown!r}{f' caption {caption!r}' if caption else ''}"
            f", {objective.describe(doc)}")


def example_documents(cfg: DataConfig, vocab: Vocabulary, latent_dim: int, per_source: int,
                      max_draws: int = 10000) -> list[tuple[str, str]]:
    """Up to `per_source` decoded samples of each source: (source name, description)."""
    stream = MixtureStream(cfg, vocab, latent_dim, unit=0, num_units=1)
    shown = {s.name: 0 for s in cfg.sources}
    out = []
    for _ in range(max_draws):
        if min(shown.values(), default=per_source) >= per_source:
            break
        source, docs = stream.draw()
        name = cfg.sources[source].name
        if shown[name] < per_source:
            shown[name] += 1
            pieces = f" (cut into {len(docs)} pieces; first shown)" if len(docs) > 1 else ""
            out.append((name, describe_document(vocab, docs[0], stream.objective) + pieces))
    return sorted(out, key=lambda item: [s.name for s in cfg.sources].index(item[0]))
