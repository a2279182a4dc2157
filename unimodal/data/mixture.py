"""The training stream: weighted sources -> documents -> packed (rows_per_batch, seq_len) batches.

    stream = PackedBatchStream(cfg.data, vocab, latent_dim, rank, world_size,
                               image_objective=cfg.model.image_objective)
    for batch in stream: ...                          # endless; dicts as pack_documents returns
    path.write_text(json.dumps(stream.state_dict()))  # with the checkpoint (plain JSON)
    stream.load_state_dict(json.loads(path.read_text()))            # next batches = the saved run's

Design choices, one line each:
- A reader is one (rank, loader worker) pair; its stream is a pure function of (config, seed, rank,
  worker, position), so ranks and workers draw different, reproducible streams.
- Weights are per sample: every draw picks a source with probability weight / sum(weights) from a
  generator seeded by (seed, reader, draw index), then takes that source's next good sample.
- A source's shards are split over readers without overlap and resampled endlessly (shard_reader.py);
  shards are never mixed by count, so a source's share does not depend on its shard sizes.
- Documents: text as `<bos> text <eos>` (cut into pieces <= seq_len when longer, text_shards.py);
  images as prompt (class / caption / <null> at cfg_drop) <boi> + the image part that the image
  objective lays out (`image_objective`, default rdpm: k blocks; sample_documents.py); audio and
  video as `<bos> caption <boa> codes <eoa> <eos>` (<bov>/<eov>), plain next-token codes.
- Block steps: k distinct of 1..T, uniform by default; `step_weights` (T values) biases them, drawn
  from the same per-draw generator, so a weighted stream is just as reproducible and resumable.
- Packing is greedy in draw order with `pack_documents`; a document never straddles two rows, and a
  piece that does not fit ends the batch and opens the next one; padding has doc id -1. The segment
  type of a position is its block id: -1 = text or prompt, >= 0 = an image block.
- Every batch holds the objective's block keys (rdpm: block_codes, block_steps, block_noise), empty
  (N = 0, `objective.empty_blocks()`) when the batch has no image, so every batch has the same keys.
- Logging counts per batch: `source_tokens` (S,) = non-padding tokens placed from each source,
  `source_samples` (S,) = samples that start in this batch, both int64, in data.sources order.
- The CPU-heavy work (noise from seeds, tokenization, packing) runs in DataLoader workers; each worker
  packs whole batches, and the DataLoader takes them round-robin (in order), which is deterministic.
- Resume: each batch carries its reader's state (draw index, per-source shard cursors, bad-data
  counts, and how many pieces of the document in hand were already used); the main process keeps the
  state of the last batch it handed out per worker. A restore rebuilds each reader at that state and
  rotates the worker order so the DataLoader starts at the worker whose batch is next. No replay.
- Resume needs the same config, seed, world size and worker count (checked, naming the key).
- Bad data (truncated tar, unreadable sample, missing field, codes of the wrong shape or range) is
  skipped and counted per source with BadSampleCounter; a reader stops with a DataError naming the
  source and example shards once more than max_bad_fraction of its first bad_check_after+ samples
  are bad. Images too long for seq_len and empty texts are dropped and counted apart.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from unimodal.config import ConfigError
from unimodal.data.data_config import DataConfig, SourceConfig  # noqa: F401 (re-exported)
from unimodal.data.image_sources import BadSampleCounter, DataError, expand_urls
from unimodal.data.sample_documents import DocumentTooLong, SampleDocuments, check_code_sources
from unimodal.data.sequences import pack_documents
from unimodal.data.shard_reader import SourceShardReader
from unimodal.data.text_shards import check_text_shard_meta
from unimodal.model.document import Document
from unimodal.model.objectives import build_objective
from unimodal.model.vocabulary import Vocabulary

STATE_VERSION = 1
_DRAW = 0                      # random-stream tag of the per-draw generators
MAX_BAD_IN_A_ROW = 10_000      # even with max_bad_fraction=1, a source of only bad samples stops


def check_against_vocabulary(cfg: DataConfig, vocab: Vocabulary, latent_dim: int,
                             prefix: str = "data", image_objective: str = "rdpm") -> None:
    """The checks that need the vocabulary: k in 1..T (rdpm), images fit seq_len, class tokens,
    tokenizer. blocks_per_image and step_weights are rdpm's; the T = 1 objectives (next_token,
    masked) show one whole image per document and refuse step weights."""
    kinds = {s.kind for s in cfg.sources}
    if latent_dim < 1:
        raise ConfigError(f"latent_dim={latent_dim}: must be >= 1 (the image tokenizer's d)")
    if image_objective != "rdpm":
        if cfg.step_weights:
            raise ConfigError(f"{prefix}.step_weights={list(cfg.step_weights)}: only "
                              f"model.image_objective=rdpm draws steps; with "
                              f"{image_objective!r} give [] (T = 1)")
        if kinds & {"class_images", "caption_images"}:
            objective = build_objective(image_objective, vocab, latent_dim)  # checks T = 1
            need = 3 + objective.image_length(objective.draw_layout(np.random.default_rng(0)))
            if need > cfg.seq_len:
                raise ConfigError(f"{prefix}.seq_len={cfg.seq_len}: an image needs at least "
                                  f"{need} tokens (<bos> prompt <boi> + the "
                                  f"{vocab.grid[0]}x{vocab.grid[1]} codes); raise it")
    else:
        _check_rdpm_blocks(cfg, vocab, prefix, kinds)
    check_code_sources(cfg.sources, vocab, cfg.seq_len, prefix)
    for i, source in enumerate(cfg.sources):
        where = f"{prefix}.sources[{i}]"
        if source.kind == "class_images" and vocab.num_classes == 0:
            raise ConfigError(f"{where}.kind=class_images needs class tokens, but the vocabulary "
                              "has num_classes=0")
        if source.kind == "text":
            check_text_shard_meta(expand_urls(source.shards), vocab, f"{where}.shards")


def _check_rdpm_blocks(cfg: DataConfig, vocab: Vocabulary, prefix: str, kinds: set) -> None:
    if cfg.step_weights and len(cfg.step_weights) != vocab.code_maps:
        raise ConfigError(f"{prefix}.step_weights has {len(cfg.step_weights)} entries, expected "
                          f"{vocab.code_maps} (T, the vocabulary's code_maps: one weight per step 1..T), "
                          "or [] for uniform")
    if kinds & {"class_images", "caption_images"}:
        if not 1 <= cfg.blocks_per_image <= vocab.code_maps:
            raise ConfigError(f"{prefix}.blocks_per_image={cfg.blocks_per_image}: must be in "
                              f"1..{vocab.code_maps} (T, the vocabulary's code_maps)")
        need = 3 + cfg.blocks_per_image * vocab.grid[0] * vocab.grid[1]
        if need > cfg.seq_len:
            raise ConfigError(f"{prefix}.seq_len={cfg.seq_len}: an image needs at least {need} "
                              f"tokens (<bos> prompt <boi> + {cfg.blocks_per_image} blocks of "
                              f"{vocab.grid[0]}x{vocab.grid[1]}); raise it or lower "
                              f"{prefix}.blocks_per_image")


# ------------------------------------------------------------------------- one reader's stream
def _counter_state(counter: BadSampleCounter) -> dict:
    return {"seen": dict(counter.seen), "bad": dict(counter.bad),
            "examples": {k: list(v) for k, v in counter.examples.items()}}


class MixtureStream:
    """The stream of one reader (rank, worker) = unit `unit` of `num_units`; see the docstring."""

    def __init__(self, cfg: DataConfig, vocab: Vocabulary, latent_dim: int, unit: int,
                 num_units: int, state: dict | None = None, image_objective: str = "rdpm"):
        self.cfg, self.vocab, self.unit = cfg, vocab, unit
        weights = np.array([s.weight for s in cfg.sources], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.counter = BadSampleCounter(cfg.max_bad_fraction, min_samples=cfg.bad_check_after)
        self.readers = [SourceShardReader(s.name, i, expand_urls(s.shards), unit, num_units,
                                          cfg.seed, self.counter)
                        for i, s in enumerate(cfg.sources)]
        self.builders = [SampleDocuments(s.kind, vocab, latent_dim, cfg.seq_len,
                                         cfg.blocks_per_image, cfg.cfg_drop, cfg.caption_loss,
                                         s.jsonl_field, cfg.step_weights, image_objective)
                         for s in cfg.sources]
        self.objective = build_objective(image_objective, vocab, latent_dim,
                                         blocks_per_image=cfg.blocks_per_image,
                                         step_weights=cfg.step_weights)
        self.draws = 0
        self.too_long = [0] * len(cfg.sources)
        self.empty = [0] * len(cfg.sources)
        self.resume_pieces = 0
        if state is not None:
            self.restore(state)

    # state ----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything the stream's future depends on, taken before a draw."""
        return {"draws": self.draws, "readers": [r.state() for r in self.readers],
                "counter": _counter_state(self.counter), "too_long": list(self.too_long),
                "empty": list(self.empty), "pieces_done": 0}

    def restore(self, state: dict) -> None:
        self.draws = int(state["draws"])
        for reader, cursor in zip(self.readers, state["readers"], strict=True):
            reader.load_state(cursor)
        counts = copy.deepcopy(state["counter"])
        self.counter.seen, self.counter.bad = counts["seen"], counts["bad"]
        self.counter.examples = counts["examples"]
        self.too_long, self.empty = list(state["too_long"]), list(state["empty"])
        self.resume_pieces = int(state["pieces_done"])

    # drawing --------------------------------------------------------------------------------
    def draw(self) -> tuple[int, list[Document]]:
        """(source index, documents of its next good sample); advances the stream by one draw."""
        rng = np.random.default_rng([self.cfg.seed, _DRAW, self.unit, self.draws])
        self.draws += 1
        s = int(rng.choice(len(self.probs), p=self.probs))
        name, bad_in_a_row = self.cfg.sources[s].name, 0
        while True:
            shard, raw = self.readers[s].next()
            try:
                docs = self.builders[s](raw, rng)
            except DocumentTooLong:
                self.counter.good(name)
                self.too_long[s] += 1
                continue
            except Exception as err:  # numpy, unicode, json and int parsing all raise their own
                self.counter.record_bad(name, f"{shard}:{raw.get('__key__', '?')}",
                                        f"{type(err).__name__}: {err}")
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_IN_A_ROW:
                    raise DataError(f"data source {name}: {bad_in_a_row} bad samples in a row, "
                                    f"last in {shard}") from err
                continue
            self.counter.good(name)
            if docs:
                return s, docs
            self.empty[s] += 1

    # packing --------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[dict[str, torch.Tensor], dict]]:
        """Endless (batch, state); the state restarts the stream right after this batch."""
        seq_len, rows_per_batch = self.cfg.seq_len, self.cfg.rows_per_batch
        snap = self.snapshot()
        source, pending = self.draw()
        done = self.resume_pieces        # pieces of the document in hand used by earlier batches
        pending = pending[done:]
        while True:
            docs, sources, first = [], [], []
            rows, used = 1, 0
            while True:
                if not pending:
                    snap = self.snapshot()
                    source, pending = self.draw()
                    done = 0
                piece = pending[0]
                if used + len(piece) > seq_len:  # the rule of pack_documents: next row
                    if rows == rows_per_batch:
                        break
                    rows, used = rows + 1, 0
                docs.append(piece)
                sources.append(source)
                first.append(done == 0)
                used += len(piece)
                pending = pending[1:]
                done += 1
            yield self.pack(docs, sources, first), {**snap, "pieces_done": done}

    def pack(self, docs: list[Document], sources: list[int], first: list[bool]) -> dict:
        out = pack_documents(docs, self.cfg.seq_len, rows=self.cfg.rows_per_batch,
                             pad_id=self.vocab.pad_id)
        for key, empty in self.objective.empty_blocks().items():
            out.setdefault(key, empty)
        tokens = torch.zeros(len(self.cfg.sources), dtype=torch.long)
        samples = torch.zeros(len(self.cfg.sources), dtype=torch.long)
        for doc, s, is_first in zip(docs, sources, first):
            tokens[s] += len(doc)
            samples[s] += int(is_first)
        out.update(source_tokens=tokens, source_samples=samples)
        return out


# ------------------------------------------------------------------------- all workers of a rank
def _as_is(batch):
    return batch


class _WorkerStreams(IterableDataset):
    """DataLoader worker w runs logical reader (w + offset) % workers of this rank."""

    def __init__(self, cfg, vocab, latent_dim, rank, workers, num_units, offset, states,
                 image_objective):
        self.cfg, self.vocab, self.latent_dim = cfg, vocab, latent_dim
        self.image_objective = image_objective
        self.rank, self.workers, self.num_units = rank, workers, num_units
        self.offset, self.states = offset, states

    def __iter__(self):
        info = get_worker_info()
        logical = ((info.id if info is not None else 0) + self.offset) % self.workers
        stream = MixtureStream(self.cfg, self.vocab, self.latent_dim,
                               self.rank * self.workers + logical, self.num_units,
                               self.states[logical], self.image_objective)
        for batch, state in stream.batches():
            batch["loader_state"] = state
            yield batch


class PackedBatchStream:
    """Endless packed batches for one rank; each a dict as pack_documents returns, always
    (rows_per_batch, seq_len), plus the block keys and `source_tokens` / `source_samples` (S,)."""

    def __init__(self, cfg: DataConfig, vocab: Vocabulary, latent_dim: int, rank: int = 0,
                 world_size: int = 1, pin_memory: bool = False, image_objective: str = "rdpm"):
        cfg.validate()
        check_against_vocabulary(cfg, vocab, latent_dim, image_objective=image_objective)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.cfg, self.vocab, self.latent_dim = cfg, vocab, latent_dim
        self.rank, self.world_size, self.pin_memory = rank, world_size, pin_memory
        self.image_objective = image_objective
        self.source_names = [s.name for s in cfg.sources]   # the order of source_tokens
        self.workers = max(1, cfg.num_workers)       # logical readers of this rank
        self.num_units = world_size * self.workers
        self.batches_consumed = 0
        self.reader_states: list[dict | None] = [None] * self.workers

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        offset = self.batches_consumed % self.workers
        dataset = _WorkerStreams(self.cfg, self.vocab, self.latent_dim, self.rank, self.workers,
                                 self.num_units, offset, list(self.reader_states),
                                 self.image_objective)
        if self.cfg.num_workers == 0:
            batches = iter(dataset)
        else:
            batches = iter(DataLoader(dataset, batch_size=None, num_workers=self.cfg.num_workers,
                                      collate_fn=_as_is, pin_memory=self.pin_memory))
        try:
            for batch in batches:
                self.reader_states[self.batches_consumed % self.workers] = batch.pop("loader_state")
                self.batches_consumed += 1
                yield batch
        finally:
            # Stop the workers now: left to a garbage-collection cycle (an exception's traceback
            # holds the loader), its queues may be finalised first and the join waits 5 s.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    # resume ---------------------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        keys = ("seq_len", "rows_per_batch", "blocks_per_image", "cfg_drop", "caption_loss",
                "seed", "max_bad_fraction", "bad_check_after")
        return {"sources": [asdict(s) for s in self.cfg.sources],
                **{k: getattr(self.cfg, k) for k in keys},
                "step_weights": [float(w) for w in self.cfg.step_weights],
                "workers": self.workers, "rank": self.rank, "world_size": self.world_size}

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "config": self._fingerprint(),
                "batches_consumed": self.batches_consumed,
                "readers": copy.deepcopy(self.reader_states)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data stream state version {state.get('version')!r}, this code "
                             f"reads {STATE_VERSION}")
        ours = self._fingerprint()
        saved_before = {"step_weights": []}    # states saved before the key existed: uniform
        for key, value in ours.items():
            if state["config"].get(key, saved_before.get(key)) != value:
                where = {"workers": "data.num_workers (0 counts as 1)", "rank": "rank",
                         "world_size": "world size"}.get(key, f"data.{key}")
                raise ValueError(f"cannot resume the data stream exactly: {where} was "
                                 f"{state['config'].get(key)!r} when saved, now {value!r}")
        self.batches_consumed = int(state["batches_consumed"])
        self.reader_states = copy.deepcopy(state["readers"])

    # bad data -------------------------------------------------------------------------------
    def bad_data_counts(self) -> dict[str, dict]:
        """Per source, summed over this rank's workers (as of the last batch each handed out):
        {"seen", "bad", "too_long", "empty": {source: int}, "examples": {source: [str]}}."""
        names = [s.name for s in self.cfg.sources]
        out = {key: dict.fromkeys(names, 0) for key in ("seen", "bad", "too_long", "empty")}
        out["examples"] = {n: [] for n in names}
        for state in filter(None, self.reader_states):
            for i, name in enumerate(names):
                out["seen"][name] += state["counter"]["seen"].get(name, 0)
                out["bad"][name] += state["counter"]["bad"].get(name, 0)
                out["examples"][name] += state["counter"]["examples"].get(name, [])
                out["too_long"][name] += state["too_long"][i]
                out["empty"][name] += state["empty"][i]
        return out

    def bad_data_summary(self) -> str:
        """Per source: samples seen, bad, too long, empty, with an example, summed over workers
        (as of the last batch handed out by each)."""
        names = [s.name for s in self.cfg.sources]
        counts = self.bad_data_counts()
        seen, bad = counts["seen"], counts["bad"]
        too_long, empty, examples = counts["too_long"], counts["empty"], counts["examples"]
        total_seen, total_bad = sum(seen.values()), sum(bad.values())
        lines = [f"data (rank {self.rank}): {total_seen} samples read, {total_bad} bad "
                 f"({total_bad / max(total_seen, 1):.2%})"]
        for name in names:
            line = (f"  {name}: {seen[name]} read, {bad[name]} bad, {too_long[name]} too long "
                    f"for seq_len, {empty[name]} empty")
            if examples[name]:
                line += f"; e.g. {examples[name][0]}"
            lines.append(line)
        return "\n".join(lines)
