"""Running hit rates by key, the accumulator behind the shapes, audio and video checkers, and the
by-key scoring of tokenizer reconstructions that all three share."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


class HitCounts:
    """`_add(key, hits)` counts sum(hits) out of len(hits) under `key`; `compute()` gives the rate
    of every key in KEYS (None where nothing was counted) and, under TOTAL_KEY, how many whole prompts
    were scored (the count under "prompt"). Subclasses say what to add per scored prompt (`update`)."""

    KEYS: tuple[str, ...] = ()
    TOTAL_KEY = "images"

    def __init__(self):
        self.counts: dict[str, list[int]] = {}

    def _add(self, key: str, hits: Sequence[bool]) -> None:
        entry = self.counts.setdefault(key, [0, 0])
        entry[0] += sum(bool(h) for h in hits)
        entry[1] += len(hits)

    def update(self, score: Any, spec: Any) -> None:
        raise NotImplementedError

    def update_by_key(self, samples, keys: Sequence[str], spec_for: Callable[[str, Any], Any],
                      score: Callable[[Any, Any], Any]) -> int:
        """Score reconstructed samples against the captions of their originals: each sample whose
        dataset key names a built-in sample (`spec_for(key, sample)` is its spec, None for another
        source's key, which is skipped) adds `score(sample, spec)`. Returns how many were scored."""
        scored = 0
        for sample, key in zip(samples, keys):
            spec = spec_for(key, sample)
            if spec is None:
                continue
            self.update(score(sample, spec), spec)
            scored += 1
        return scored

    def compute(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {}
        for key in self.KEYS:
            hits, total = self.counts.get(key, (0, 0))
            out[key] = hits / total if total else None
        out[self.TOTAL_KEY] = self.counts.get("prompt", (0, 0))[1]
        return out


def builtin_spec(key: str, prefix: str, spec: Callable[[int, int], T]) -> T | None:
    """`spec(seed, index)` for a built-in source's dataset key '<prefix>-<seed>-<index>' (how the
    shapes, audio-notes and moving-shapes datasets name their samples); None for any other key."""
    m = re.match(rf"^{re.escape(prefix)}-(?P<seed>\d+)-(?P<index>\d+)$", key)
    return None if m is None else spec(int(m.group("seed")), int(m.group("index")))
