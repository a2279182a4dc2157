"""The code modalities of the vocabulary: image first, then any further ones (audio, video, ...).

Design choices:
- A modality is one tokenizer plus one vocabulary entry: K codes shared by its T code maps, the
  grid of one code map (1-D [n] audio frames, 2-D [h, w] images, 3-D [t, h, w] video) and a
  begin/end marker pair. Nothing else in the package computes a code range by hand: it asks
  `vocab.modality(name)` for a CodeModality.
- Image keeps its historic place (markers <boi>/<eoi> among the shared specials, codes right after
  them). A further modality appends two ranges after everything before it: "{name}_special" (its
  two markers) and "{name}" (its K codes), so no earlier id ever moves.
- Marker tag: the shortest prefix of the name that no earlier modality uses ("i" is image's, "s"
  would spell <bos>/<eos>):
  audio -> <boa>/<eoa>, video -> <bov>/<eov>. The markers are saved in vocabulary.json, so a
  later change of this rule never renames a saved vocabulary's markers.
- Documents of a further modality are plain next-token sequences, `code_prompt` then the T code
  maps flattened map after map (ids `code_offset + code`), then <eo?> <eos>; the model scores them
  with the full head (UnifiedModel) and samples them with the softmax restricted to the codes.
- Masked softmax: `logits_mask(vocab, name)` is True exactly at the modality's codes; adding
  `additive_logits_mask` (0 / -inf) to full-vocabulary logits gives the same distribution over
  those codes as a softmax over the code slice, which is what image sampling and the image loss
  compute (tests/model/test_modalities.py checks the two agree).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from unimodal.config import ConfigError

RESERVED_NAMES = ("text", "special", "image")  # range names the vocabulary itself uses
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*\Z")  # also a loss key prefix: "{name}_loss"


@dataclass
class CodeModalityConfig:
    """A code modality after image, e.g. {name: audio, tokenizer: runs/audio_tok/tokenizer} or
    {name: audio, codebook_size: 1024, code_maps: 8, grid: [50]}. Its tokenizer must agree
    (Vocabulary.check_tokenizer)."""
    name: str = ""  # lowercase letters and digits, e.g. audio, video
    codebook_size: int = 0  # K codes shared by the T code maps
    code_maps: int = 0  # T code maps per sample
    grid: list[int] = field(default_factory=list)  # one code map: [n], [h, w] or [t, h, w]
    # Folder written by tokenizers/train_rdpm.py (an audio or video tokenizer): K, T and grid left
    # 0 / [] are read from it (UnifiedModelConfig.resolve_image_geometry), and the export copies
    # it into the checkpoint ("{name}_tokenizer/") so eval/sample.py can decode sampled codes.
    tokenizer: str = ""

    def validate(self, prefix: str) -> None:
        if not NAME_PATTERN.match(self.name) or self.name in RESERVED_NAMES:
            raise ConfigError(f"{prefix}.name={self.name!r}: must be lowercase letters and digits "
                              f"(starting with a letter) and not one of {list(RESERVED_NAMES)}")
        for key in ("codebook_size", "code_maps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)}: must be >= 1")
        if not 1 <= len(self.grid) <= 3 or min(self.grid) < 1:
            raise ConfigError(f"{prefix}.grid={list(self.grid)}: must be 1 to 3 positive ints "
                              "([n], [h, w] or [t, h, w])")


def validate_modalities(modalities: list, prefix: str) -> None:
    seen = set()
    for i, modality in enumerate(modalities):
        modality.validate(f"{prefix}[{i}]")
        if modality.name in seen:
            raise ConfigError(f"{prefix}[{i}].name={modality.name!r}: named twice")
        seen.add(modality.name)


@dataclass(frozen=True)
class CodeModality:
    """Where one modality lives in the vocabulary; read-only, built by the Vocabulary."""
    name: str
    begin_id: int  # <bo?>: opens a sample of this modality
    end_id: int  # <eo?>: closes it
    code_offset: int  # vocabulary id of code 0
    codebook_size: int  # K
    code_maps: int  # T
    grid: tuple[int, ...]  # one code map
    markers: tuple[str, str]  # the names of begin_id and end_id, e.g. ("<boa>", "<eoa>")

    @property
    def tokens_per_map(self) -> int:
        return math.prod(self.grid)

    @property
    def code_slice(self) -> slice:
        return slice(self.code_offset, self.code_offset + self.codebook_size)

    def is_code(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.code_offset) & (ids < self.code_offset + self.codebook_size)


def marker_tag(name: str, taken: set[str]) -> str:
    """The shortest prefix of name not in taken."""
    for end in range(1, len(name) + 1):
        if name[:end] not in taken:
            return name[:end]
    raise ConfigError(f"modality {name!r}: every prefix of the name is already a marker tag "
                      f"({sorted(taken)}); choose another name")


def append_modalities(layout: dict, modalities: list) -> None:
    """Add the further modalities to a built image-only layout, in place, after its last range.
    An empty list leaves the layout exactly as it was (image-only files stay byte-identical)."""
    if not modalities:
        return
    ranges = layout["ranges"]
    start = sum(length for _, length in ranges.values())
    taken, entries = {"i", "s"}, {}  # <boi>/<eoi> are image's, <bos>/<eos> the sequence marks
    for m in modalities:
        tag = marker_tag(m.name, taken)
        taken.add(tag)
        entries[m.name] = {"codebook_size": m.codebook_size, "code_maps": m.code_maps,
                           "grid": list(m.grid), "markers": [f"<bo{tag}>", f"<eo{tag}>"]}
        ranges[f"{m.name}_special"] = [start, 2]
        ranges[m.name] = [start + 2, m.codebook_size]
        start += 2 + m.codebook_size
    # Rebuilt so "modalities" sits after "image": check_compatible walks keys in order and names
    # a cause (a modality's field) before its effect (a range).
    rebuilt = {}
    for key, value in layout.items():
        rebuilt[key] = value
        if key == "image":
            rebuilt["modalities"] = entries
    layout.clear()
    layout.update(rebuilt)


def further_modalities(layout: dict, ranges: dict) -> list[CodeModality]:
    """The CodeModality views of the modalities after image, from a saved layout."""
    views = []
    for name, entry in layout.get("modalities", {}).items():
        marker_start = ranges[f"{name}_special"][0]
        views.append(CodeModality(name, marker_start, marker_start + 1, ranges[name][0],
                                  entry["codebook_size"], entry["code_maps"], tuple(entry["grid"]),
                                  tuple(entry["markers"])))
    return views


def check_against_tokenizer(modality: CodeModality, codebook_size: int, code_maps: int,
                            grid) -> None:
    for key, ours, theirs in (("codebook_size", modality.codebook_size, int(codebook_size)),
                              ("code_maps", modality.code_maps, int(code_maps)),
                              ("grid", list(modality.grid), [int(g) for g in grid])):
        if ours != theirs:
            raise ValueError(f"vocabulary modality {modality.name!r}: {key} is {ours} in the "
                             f"vocabulary, the tokenizer has {theirs}")


# ------------------------------------------------------------------------- documents
def code_prompt(vocab, name: str, caption: str | None = None) -> list[int]:
    """<bos> (caption | <null>) <bo?>: what precedes the codes of a further modality `name`, in
    training documents (data/sample_documents.py) and at sampling alike."""
    body = vocab.encode_text(caption) if caption else [vocab.null_id]
    return [vocab.bos_id, *body, vocab.modality(name).begin_id]


# ------------------------------------------------------------------------- masks and loss names
def logits_mask(vocab, name: str, device=None) -> torch.Tensor:
    """(V,) bool, True exactly at the codes of modality `name`."""
    mask = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    mask[vocab.modality(name).code_slice] = True
    return mask


def additive_logits_mask(vocab, name: str, device=None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(V,) 0 at the codes of modality `name`, -inf elsewhere: add it to full-vocabulary logits."""
    allowed = logits_mask(vocab, name, device)
    return torch.zeros(vocab.size, dtype=dtype, device=device).masked_fill(~allowed, -math.inf)


def loss_keys(vocab) -> tuple[str, ...]:
    """The per-modality loss keys UnifiedModel.forward returns and the pretrainer logs:
    loss, text_loss, image_loss, then {name}_loss for each further modality."""
    return ("loss", "text_loss", *(f"{m.name}_loss" for m in vocab.modalities))
