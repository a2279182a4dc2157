"""A pickle that runs code when loaded: it creates a marker file. Used to check that every loader
of user files refuses it (and that the marker never appears)."""

from pathlib import Path

import torch


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload(marker: Path) -> _Payload:
    """An object whose unpickling creates `marker`."""
    return _Payload(Path(marker))


def plant_payload(path: Path, marker: Path, wrap=lambda payload: {"state": payload}) -> Path:
    """Write a torch file at `path` whose unpickling would create `marker`; return `marker`."""
    marker = Path(marker)
    torch.save(wrap(_Payload(marker)), path)
    return marker
