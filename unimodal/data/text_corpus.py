"""Text corpora for training the text tokenizer and the tiny CPU language models.

Design choices:
- `read_documents` streams documents from .txt (one document per line) and .jsonl (one JSON object
  per line, text under a named field) files; every path is checked before the first one is read.
- `shapes_text_corpus` is generated, deterministic English about the shapes dataset: the dataset's
  own captions (so caption tokens are in the tokenizer) interleaved with templated sentences about
  colours, shapes and positions (so a tiny LM has something to learn to complete).
- The corpus is a pure function of (num, seed): captions come from render_sample(i, seed) and the
  templates from numpy.random.default_rng((seed, i)), so any slice is reproducible on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from unimodal.data.shapes import COLORS, SHAPES, render_sample

TEXT_SUFFIXES = (".txt", ".jsonl")

# A caption does not need the image; 32 px is the cheapest size render_sample accepts.
_CAPTION_IMAGE_SIZE = 32
_RELATIONS = ("to the left of", "to the right of", "above", "below")
_POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
_SHAPE_FACTS = {
    "circle": "a circle is round and has no corners.",
    "square": "a square has four equal sides and four corners.",
    "triangle": "a triangle has three sides and three corners.",
    "diamond": "a diamond is a square standing on one of its corners.",
}
_NUMBERS = ("one", "two", "three")


def read_documents(paths: Sequence[str | Path], jsonl_field: str = "text") -> Iterator[str]:
    """Documents of the given .txt / .jsonl files, in order; blank lines are skipped."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"input file(s) not found: {', '.join(missing)}")
    unsupported = [str(p) for p in paths if p.suffix not in TEXT_SUFFIXES]
    if unsupported:
        raise ValueError(f"unsupported input file(s) {', '.join(unsupported)}: use {' or '.join(TEXT_SUFFIXES)}")
    return _iter_documents(paths, jsonl_field)  # checks above run now, not at the first next()


def _iter_documents(paths: list[Path], jsonl_field: str) -> Iterator[str]:
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if path.suffix == ".txt":
                    yield line.rstrip("\n")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON ({err})") from err
                text = record.get(jsonl_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{number}: no string field {jsonl_field!r}")
                if text.strip():
                    yield text


def _a(color: str, shape: str) -> str:
    return f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape}"


def _templated_sentence(rng: np.random.Generator) -> str:
    colors = [str(c) for c in rng.choice(list(COLORS), size=3, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPES, size=3)]
    c1, c2, c3 = colors
    s1, s2, s3 = shapes
    relation = str(rng.choice(_RELATIONS))
    count = int(rng.integers(1, 4))
    listed = [_a(c, s) for c, s in zip(colors[:count], shapes[:count])]
    listing = listed[0] if count == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    templates = (
        f"the {c1} {s1} is {relation} the {c2} {s2}.",
        f"{_a(c1, s1)} is {str(rng.choice(_POSITIONS))}.",
        f"there {'is' if count == 1 else 'are'} {_NUMBERS[count - 1]} "
        f"shape{'s' * (count > 1)} in the picture: {listing}.",
        f"what colour is the {s1}? the {s1} is {c1}.",
        f"what shape is {c1}? the {c1} shape is a {s1}.",
        f"a {s1} can be {c1}, {c2} or {c3}. this one is {c2}.",
        f"{_SHAPE_FACTS[s1]} the {c1} {s1} is next to {_a(c3, s3)}.",
        f"draw {_a(c1, s1)} {relation} {_a(c2, s2)}.",
    )
    return templates[int(rng.integers(len(templates)))]


def shapes_text_corpus(num: int, seed: int = 0) -> list[str]:
    """`num` short documents: even indices are shapes captions, odd ones templated sentences."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num!r}")
    corpus = []
    for index in range(num):
        if index % 2 == 0:
            corpus.append(render_sample(index // 2, seed, _CAPTION_IMAGE_SIZE).caption)
        else:
            corpus.append(_templated_sentence(np.random.default_rng((int(seed), index))))
    return corpus
