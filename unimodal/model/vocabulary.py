"""One vocabulary shared by text and image codes; the only place that decides which id means what.

Design choices:
- Layout: [0, V_text) text, then specials, then the K image codes shared by all T code maps, as an
  ordered dict of named ranges {name: (start, length)} that is contiguous and covers [0, size).
- Specials, in this order: <boi> <eoi> <null> <pad>, then <bos>/<eos> only where the text tokenizer
  has none, then <class_0>..<class_{C-1}>. <pad> is always ours, so padding never aliases text.
- bos/eos reuse the text tokenizer's ids when it defines them (an LLM keeps its own sequence marks).
- Text ids are the tokenizer's ids unchanged, so a base LLM's embedding rows keep their meaning.
- The text tokenizer is a sentencepiece .model file or a local Hugging Face tokenizer folder; both
  sit behind one small backend interface and are imported lazily (neither is a core dependency).
- save() writes vocabulary.json plus a copy of the text tokenizer: a checkpoint folder is
  self-contained, and load() never touches the original path.
- The JSON records a sha256 of the text tokenizer's id -> token table; load() and
  check_compatible() use it to catch a swapped tokenizer whose size happens to match.
- Further code modalities (audio, video: `modalities`) append their own ranges (two markers,
  then codes) after "image" in build(), so no existing id moves and old checkpoints stay valid;
  modalities.py holds the registry, and `vocab.modality(name)` is the one way to find a range.
- The version written is the lowest that describes the layout: an image-only vocabulary is
  written as version 2, byte for byte as before the registry; one with further modalities is 3.
"""

from __future__ import annotations

import hashlib
import json
import operator
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from unimodal.config import ConfigError
from unimodal.model.modalities import (CodeModality, CodeModalityConfig, append_modalities,
                                       check_against_tokenizer, further_modalities,
                                       validate_modalities)

# 2: image.steps became image.code_maps; load() still reads version 1.
# 3: further code modalities ("modalities", ranges "{name}_special" and "{name}" after image);
#    written only when there are some, so an image-only vocabulary.json is still version 2.
LAYOUT_VERSION = 3
IMAGE_ONLY_VERSION = 2
VOCAB_FILE = "vocabulary.json"
BASE_SPECIALS = ("<boi>", "<eoi>", "<null>", "<pad>")


@dataclass
class VocabularyConfig:
    text_tokenizer: str = ""  # sentencepiece .model file, or a local Hugging Face tokenizer folder
    num_classes: int = 0  # C class tokens for class-conditional generation (0 = none)
    # The image geometry has one source of truth, the image tokenizer: 0 / [] = read from
    # model.image_tokenizer (UnifiedModelConfig.resolve_image_geometry); a value given here is
    # only checked against it.
    codebook_size: int = 0  # K of the image tokenizer
    code_maps: int = 0  # T code maps per image (the tokenizer's `code_maps`)
    grid: list[int] = field(default_factory=list)  # (h, w) of one code map
    # Code modalities after image, in id order (audio, video, ...); appending one moves no id.
    modalities: list[CodeModalityConfig] = field(default_factory=list)
    # Old key -> new key: a config that still says `steps` fails naming `code_maps` (`steps` is
    # also train.steps, optimizer steps, in the same YAML); saved files are mapped on load.
    RENAMED: ClassVar[dict[str, str]] = {"steps": "code_maps"}

    @classmethod
    def text_only(cls, text_tokenizer: str) -> "VocabularyConfig":
        """For text-id work (encoding text shards): text ids come before every image id, so they
        do not depend on the image geometry, which is set to a placeholder here."""
        return cls(text_tokenizer=text_tokenizer, codebook_size=1, code_maps=1, grid=[1, 1])

    def validate(self, prefix: str = "vocab") -> None:
        path = Path(self.text_tokenizer)
        if not self.text_tokenizer:
            raise ConfigError(f"{prefix}.text_tokenizer is empty: give a sentencepiece .model file "
                              "or a local Hugging Face tokenizer folder")
        if not path.exists():
            raise ConfigError(f"{prefix}.text_tokenizer={self.text_tokenizer!r}: file not found")
        if path.is_dir() and not any((path / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
            raise ConfigError(f"{prefix}.text_tokenizer={self.text_tokenizer!r}: folder has no "
                              "tokenizer.json or tokenizer_config.json (not a Hugging Face tokenizer)")
        for key in ("codebook_size", "code_maps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)}: must be >= 1 (0 = from "
                                  "the image tokenizer, which was not given)")
        if self.num_classes < 0:
            raise ConfigError(f"{prefix}.num_classes={self.num_classes}: must be >= 0")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ConfigError(f"{prefix}.grid={list(self.grid)}: must be two positive ints [h, w]")
        validate_modalities(self.modalities, f"{prefix}.modalities")


# ------------------------------------------------------------------------------ text tokenizers
def _table_hash(tokens: list) -> str:
    return hashlib.sha256(json.dumps(tokens, ensure_ascii=False).encode()).hexdigest()


class _SentencePieceText:
    kind, saved_name = "sentencepiece", "text_tokenizer.model"

    def __init__(self, path: Path):
        import sentencepiece as spm  # lazy: only configs that use it need the package

        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.size = self.sp.get_piece_size()
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else None

    def table_hash(self) -> str:
        return _table_hash([self.sp.id_to_piece(i) for i in range(self.size)])

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)  # control pieces (bos/eos) decode to nothing

    def save(self, folder: Path) -> None:
        target = folder / self.saved_name
        if not (target.exists() and target.samefile(self.path)):
            shutil.copyfile(self.path, target)


class _HuggingFaceText:
    kind, saved_name = "huggingface", "text_tokenizer"

    def __init__(self, path: Path):
        from transformers import AutoTokenizer  # lazy: transformers takes seconds to import

        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # len() counts added tokens; max id + 1 also covers a table with holes.
        self.size = max(len(self.tok), max(self.tok.get_vocab().values()) + 1)
        self.bos_id, self.eos_id = self.tok.bos_token_id, self.tok.eos_token_id

    def table_hash(self) -> str:
        return _table_hash(self.tok.convert_ids_to_tokens(list(range(self.size))))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)  # bos/eos are the vocabulary's call

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def save(self, folder: Path) -> None:
        self.tok.save_pretrained(str(folder / self.saved_name))


def _open_text_tokenizer(path: str | Path) -> _SentencePieceText | _HuggingFaceText:
    path = Path(path)
    return _HuggingFaceText(path) if path.is_dir() else _SentencePieceText(path)


def _first_difference(a, b, where: str) -> str | None:
    """The dotted path of the first place two JSON-like values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: this vocabulary has {len(a)} entries, the other has {len(b)}"
        return next(filter(None, (_first_difference(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))), None)
    return None if a == b else f"{where}: this vocabulary has {a!r}, the other has {b!r}"


def _upgrade_layout(layout: dict) -> dict:
    """A version-1 vocabulary.json (written before the rename) named T `image.steps`; the rest of
    the layout is unchanged, so it maps onto version 2 key for key, in place."""
    if layout.get("version") == 1:
        image = layout["image"]
        layout["image"] = {"codebook_size": image["codebook_size"], "code_maps": image["steps"],
                           "grid": image["grid"]}
        layout["version"] = 2
    return layout


# ------------------------------------------------------------------------------------ vocabulary
class Vocabulary:
    """Use build(cfg) or load(folder); the layout dict is exactly what vocabulary.json holds."""

    def __init__(self, text: _SentencePieceText | _HuggingFaceText, layout: dict):
        self._text, self._layout = text, layout
        start = 0
        for name, (range_start, length) in layout["ranges"].items():
            if range_start != start or length < 0:
                raise ValueError(f"vocabulary range {name!r} starts at {range_start}, expected {start}")
            start += length
        special_start = layout["ranges"]["special"][0]
        self._special_ids = {name: special_start + i for i, name in enumerate(layout["specials"])}
        image = layout["image"]
        self._modalities = {m.name: m for m in [
            CodeModality("image", self._special_ids["<boi>"], self._special_ids["<eoi>"],
                         layout["ranges"]["image"][0], image["codebook_size"], image["code_maps"],
                         tuple(image["grid"]), ("<boi>", "<eoi>")),
            *further_modalities(layout, layout["ranges"])]}
        for m in self.modalities[1:]:  # their markers sit in their own "{name}_special" range
            self._special_ids.update({m.markers[0]: m.begin_id, m.markers[1]: m.end_id})

    @classmethod
    def build(cls, cfg: VocabularyConfig) -> Vocabulary:
        cfg.validate()
        try:
            text = _open_text_tokenizer(cfg.text_tokenizer)
        except Exception as err:  # sentencepiece / transformers raise many types
            raise ConfigError(f"vocab.text_tokenizer={cfg.text_tokenizer!r}: cannot load: {err}") from err
        specials = list(BASE_SPECIALS)
        specials += [name for name, own in (("<bos>", text.bos_id), ("<eos>", text.eos_id)) if own is None]
        specials += [f"<class_{c}>" for c in range(cfg.num_classes)]
        ranges = {"text": (0, text.size), "special": (text.size, len(specials))}
        ranges["image"] = (text.size + len(specials), cfg.codebook_size)
        layout = {
            "version": LAYOUT_VERSION if cfg.modalities else IMAGE_ONLY_VERSION,
            "text": {"kind": text.kind, "size": text.size, "sha256": text.table_hash(),
                     "bos_id": text.bos_id, "eos_id": text.eos_id, "file": text.saved_name},
            # The causes first and what follows from them last, so check_compatible reports
            # "num_classes differs" rather than "ranges.image differs".
            "image": {"codebook_size": cfg.codebook_size, "code_maps": cfg.code_maps,
                      "grid": list(cfg.grid)},
            "num_classes": cfg.num_classes,
            "specials": specials,
            "ranges": {name: list(r) for name, r in ranges.items()},
        }
        append_modalities(layout, cfg.modalities)  # after every earlier range: no id moves
        return cls(text, layout)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._text.save(folder)
        (folder / VOCAB_FILE).write_text(json.dumps(self._layout, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Vocabulary:
        folder = Path(folder)
        if not (folder / VOCAB_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {VOCAB_FILE}; pass a folder written by Vocabulary.save")
        layout = _upgrade_layout(json.loads((folder / VOCAB_FILE).read_text()))
        if layout.get("version") not in (IMAGE_ONLY_VERSION, LAYOUT_VERSION):
            raise ValueError(f"{folder / VOCAB_FILE}: layout version {layout.get('version')!r}, "
                             f"this code reads versions 1 to {LAYOUT_VERSION}")
        text = _open_text_tokenizer(folder / layout["text"]["file"])
        if text.size != layout["text"]["size"] or text.table_hash() != layout["text"]["sha256"]:
            raise ValueError(f"the text tokenizer copy in {folder} does not match {VOCAB_FILE} "
                             "(size or sha256 differs); the folder was modified")
        return cls(text, layout)

    # ids and sizes -----------------------------------------------------------------------------
    @property
    def text_size(self) -> int:
        return self._layout["text"]["size"]

    @property
    def size(self) -> int:
        start, length = list(self._layout["ranges"].values())[-1]
        return start + length

    @property
    def ranges(self) -> dict[str, tuple[int, int]]:
        return {name: tuple(r) for name, r in self._layout["ranges"].items()}

    @property
    def bos_id(self) -> int:
        own = self._layout["text"]["bos_id"]
        return own if own is not None else self._special_ids["<bos>"]

    @property
    def eos_id(self) -> int:
        own = self._layout["text"]["eos_id"]
        return own if own is not None else self._special_ids["<eos>"]

    pad_id = property(lambda self: self._special_ids["<pad>"])
    boi_id = property(lambda self: self._special_ids["<boi>"])
    eoi_id = property(lambda self: self._special_ids["<eoi>"])
    null_id = property(lambda self: self._special_ids["<null>"])
    # The image properties predate the registry; they read the image modality.
    code_offset = property(lambda self: self._modalities["image"].code_offset)
    codebook_size = property(lambda self: self._modalities["image"].codebook_size)
    code_maps = property(lambda self: self._modalities["image"].code_maps)
    grid = property(lambda self: self._modalities["image"].grid)
    num_classes = property(lambda self: self._layout["num_classes"])

    # code modalities ---------------------------------------------------------------------------
    @property
    def modalities(self) -> tuple[CodeModality, ...]:
        """Every code modality in id order, image first."""
        return tuple(self._modalities.values())

    def modality(self, name: str) -> CodeModality:
        if name not in self._modalities:
            raise ValueError(f"no code modality {name!r} in the vocabulary; it has "
                             f"{list(self._modalities)}")
        return self._modalities[name]

    def check_tokenizer(self, name: str, codebook_size: int, code_maps: int, grid) -> None:
        """Raise, naming the modality and the field, unless the tokenizer of modality `name`
        has this vocabulary's K, T and grid."""
        check_against_tokenizer(self.modality(name), codebook_size, code_maps, grid)

    def class_token(self, class_id: int) -> int:
        try:
            index = operator.index(class_id)  # ints, numpy and 0-d torch ints; not floats
        except TypeError:
            index = None
        if index is None or isinstance(class_id, bool) or not 0 <= index < self.num_classes:
            valid = f"0..{self.num_classes - 1}" if self.num_classes else "none (num_classes=0)"
            raise ValueError(f"class id {class_id!r} is out of range; valid class ids: {valid}")
        return self._special_ids[f"<class_{index}>"]

    # text ---------------------------------------------------------------------------------------
    def encode_text(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return [self.bos_id] * bos + self._text.encode(text) + [self.eos_id] * eos

    def decode_text(self, ids) -> str:
        ids = ids.flatten().tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]
        return self._text.decode([i for i in ids if 0 <= i < self.text_size])

    # image codes --------------------------------------------------------------------------------
    def is_code(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.code_offset) & (ids < self.code_offset + self.codebook_size)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes in [0, K) -> vocabulary ids."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return codes.long() + self.code_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of image codes -> codes in [0, K)."""
        if not bool(self.is_code(ids).all()):
            raise ValueError(f"some ids are not image codes (outside [{self.code_offset}, "
                             f"{self.code_offset + self.codebook_size}))")
        return ids - self.code_offset

    def check_image_tokenizer(self, codebook_size: int, code_maps: int, grid) -> None:
        self.check_tokenizer("image", codebook_size, code_maps, grid)

    def check_compatible(self, other: Vocabulary) -> None:
        # The version follows from the rest (3 iff there are further modalities): name the cause.
        ours, theirs = ({k: v for k, v in v._layout.items() if k != "version"} for v in (self, other))
        difference = _first_difference(ours, theirs, "")
        if difference:
            hint = " (a different text tokenizer)" if difference.startswith("text.") else ""
            raise ValueError(f"incompatible vocabularies at {difference}{hint}")

    def describe(self) -> str:
        names = [n for n in self._layout["specials"] if not n.startswith("<class_")]
        special = " ".join(f"{n}={self._special_ids[n]}" for n in names)
        if self.num_classes:
            special += f" <class_0>..<class_{self.num_classes - 1}>"
        notes = {"text": f"{self._layout['text']['kind']}, bos={self.bos_id} eos={self.eos_id}",
                 "special": special,
                 **{m.name: f"K={m.codebook_size}, T={m.code_maps}, grid "
                              + "x".join(map(str, m.grid)) for m in self.modalities},
                 **{f"{m.name}_special": f"{m.markers[0]}={m.begin_id} {m.markers[1]}={m.end_id}"
                    for m in self.modalities[1:]}}
        width = max(8, *map(len, self.ranges))  # 8 unless a modality's range name is longer
        rows = [f"{'range':<{width}} {'ids':<18} {'count':>7}  notes"]
        for name, (start, length) in self.ranges.items():
            rows.append(f"{name:<{width}} {f'[{start}, {start + length})':<18} {length:>7}  "
                        f"{notes.get(name, '')}")
        rows.append(f"{'total':<{width}} {'':<18} {self.size:>7}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, text={self.text_size}, code_offset={self.code_offset})"


def image_prompt(vocab: Vocabulary, caption: str | None = None, class_id: int | None = None
                 ) -> list[int]:
    """<bos> (caption | class token | <null>) <boi>."""
    if caption:
        body = vocab.encode_text(caption)
    elif class_id is not None and class_id >= 0:
        body = [vocab.class_token(class_id)]
    else:
        body = [vocab.null_id]
    return [vocab.bos_id, *body, vocab.boi_id]
