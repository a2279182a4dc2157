"""Running hit rates by key, the accumulator behind the shapes, audio and video checkers."""

from __future__ import annotations

from typing import Sequence


class HitCounts:
    """`_add(key, hits)` counts sum(hits) out of len(hits) under `key`; `compute()` gives the rate
    of every key in KEYS (None where nothing was counted) and, under TOTAL_KEY, how many whole prompts
    were scored (the count under "prompt"). Subclasses say what to add per scored prompt."""

    KEYS: tuple[str, ...] = ()
    TOTAL_KEY = "images"

    def __init__(self):
        self.counts: dict[str, list[int]] = {}

    def _add(self, key: str, hits: Sequence[bool]) -> None:
        entry = self.counts.setdefault(key, [0, 0])
        entry[0] += sum(bool(h) for h in hits)
        entry[1] += len(hits)

    def compute(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {}
        for key in self.KEYS:
            hits, total = self.counts.get(key, (0, 0))
            out[key] = hits / total if total else None
        out[self.TOTAL_KEY] = self.counts.get("prompt", (0, 0))[1]
        return out
