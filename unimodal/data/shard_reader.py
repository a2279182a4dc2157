"""One source's shards as an endless, resumable stream of raw webdataset samples for one reader.

A reader is one (rank, loader worker) pair, `unit` of `num_units` = world_size * workers.

Design choices, one line each:
- Disjoint shares: with at least num_units shards, a reader owns shards[unit::num_units]; with fewer,
  it reads every shard and keeps sample i of shard j iff (i + j) % num_units == unit. Either way each
  sample belongs to exactly one reader, so ranks and workers never see the same sample. (The second
  way reads every shard in every reader: fine for a small source; split a big one into at least
  world_size * workers shards.)
- Resampled, not exhausted: epoch e visits the reader's shards in a random order, and each shard's
  samples in a random order, both drawn from (seed, source, unit, epoch[, shard]) alone.
- A shard is read whole into memory (raw bytes, decoded later), so the in-shard shuffle needs no
  buffer state: the position is just the cursor {epoch, shard, sample}. Keep shards to tens of MB.
- Resume = set the cursor; the current shard is re-read and the cursor indexes its permutation.
- A truncated or unreadable tar counts as one bad sample of its source (the samples before the break
  are kept), and only when the shard is entered at sample 0, so a resume does not count it twice.
  A cut exactly at a tar header boundary looks like a normal end and is not detectable.
- Garbage inside a tar makes Python's tar reader stop early without an error. So after each read
  the member headers are scanned again, skipping unreadable blocks (`tarfile`'s ignore_zeros),
  and every sample key seen there but not read is counted bad (header-only: data is seeked over).
- A reader whose whole share holds no samples stops with a DataError naming the shards.
"""

from __future__ import annotations

import tarfile

import numpy as np
import webdataset as wds

from unimodal.data.image_sources import BadSampleCounter, DataError

_SHARD_ORDER, _SAMPLE_ORDER = 1, 2  # stream tags: different random streams from one seed


def sample_keys_in_tar(path: str) -> set[str]:
    """The sample keys (member name up to the first dot of its base name, as webdataset groups
    files) of every member header found, scanning past corrupt blocks."""
    keys = set()
    with tarfile.open(path, "r:", ignore_zeros=True) as tar:
        for member in tar:
            if member.isfile():
                folder, _, base = member.name.rpartition("/")
                keys.add(f"{folder}/{base.split('.', 1)[0]}" if folder else base.split(".", 1)[0])
    return keys


def read_whole_shard(path: str) -> tuple[list[dict], Exception | None, int]:
    """Every sample of a tar in file order, the error that cut the read short (or None), and how
    many samples that error cost (at least 1 when there is an error)."""
    samples: list[dict] = []
    ds = wds.WebDataset([path], shardshuffle=False, nodesplitter=None, workersplitter=None,
                        empty_check=False, handler=wds.reraise_exception)
    err = None
    try:
        for raw in ds:
            samples.append(raw)
    except Exception as caught:  # truncated tar, I/O error, missing file: keep what was read
        err = caught
    try:
        missing = len(sample_keys_in_tar(path) - {raw["__key__"] for raw in samples})
    except (OSError, tarfile.TarError):
        missing = 0
    if missing and err is None:
        err = tarfile.ReadError(f"corrupt data inside the tar: {missing} samples after the first "
                                f"{len(samples)} could not be read")
    return samples, err, max(missing, 1) if err is not None else 0


class SourceShardReader:
    """Raw samples of one source for one reader; `cursor` is its whole position."""

    def __init__(self, name: str, source_index: int, shards: list[str], unit: int,
                 num_units: int, seed: int, counter: BadSampleCounter):
        if not shards:
            raise ValueError(f"source {name}: no shards")
        self.name, self.source_index, self.counter = name, source_index, counter
        self.unit, self.num_units, self.seed = unit, num_units, seed
        self.split_samples = len(shards) < num_units
        self.shards = list(shards) if self.split_samples else list(shards[unit::num_units])
        self.cursor = {"epoch": 0, "shard": 0, "sample": 0}
        self._loaded: tuple[int, int] | None = None   # (epoch, shard) of `_samples`
        self._samples: list[dict] = []
        self._order: list[int] = []

    # state ----------------------------------------------------------------------------------
    def state(self) -> dict:
        return dict(self.cursor)

    def load_state(self, cursor: dict) -> None:
        self.cursor = {k: int(cursor[k]) for k in ("epoch", "shard", "sample")}
        self._loaded = None

    # reading --------------------------------------------------------------------------------
    def _shard_order(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, _SHARD_ORDER, self.source_index, self.unit, epoch])
        return rng.permutation(len(self.shards)).tolist()

    def _load(self, epoch: int, position: int, count_errors: bool) -> None:
        index = self._shard_order(epoch)[position]
        path = self.shards[index]
        samples, err, lost = read_whole_shard(path)
        if err is not None and count_errors:  # the counter logs it
            self.counter.record_bad(self.name, path, f"unreadable tar after {len(samples)} "
                                                     f"samples: {type(err).__name__}: {err}",
                                    count=lost)
        if self.split_samples:
            samples = [s for i, s in enumerate(samples) if (i + index) % self.num_units == self.unit]
        rng = np.random.default_rng([self.seed, _SAMPLE_ORDER, self.source_index, self.unit,
                                     epoch, position])
        self._samples, self._order = samples, rng.permutation(len(samples)).tolist()
        self._path, self._loaded = path, (epoch, position)

    def next(self) -> tuple[str, dict]:
        """(shard path, raw sample): the next sample of this reader's endless stream."""
        empty_shards = 0
        while True:
            c = self.cursor
            if self._loaded != (c["epoch"], c["shard"]):
                self._load(c["epoch"], c["shard"], count_errors=c["sample"] == 0)
                empty_shards = empty_shards + 1 if not self._samples else 0
            if c["sample"] < len(self._samples):
                raw = self._samples[self._order[c["sample"]]]
                c["sample"] += 1
                return self._path, raw
            if empty_shards >= len(self.shards):
                raise DataError(f"source {self.name}: no readable samples in any of this reader's "
                                f"{len(self.shards)} shards (reader {self.unit} of "
                                f"{self.num_units}), e.g. {self.shards[:3]}")
            c["shard"], c["sample"] = c["shard"] + 1, 0
            if c["shard"] == len(self.shards):
                c["epoch"], c["shard"] = c["epoch"] + 1, 0
