"""Text shards: the webdataset format of text sources, writing them, and text samples -> documents.

A sample of a text shard `shard-000000.tar` holds one document as any of:
    ids.npy   int32 (n,)   pre-tokenized text ids (written by tokenizers/encode_text.py)
    txt       utf-8        raw text, tokenized on the fly
    json      utf-8 JSON   an object whose `jsonl_field` (default "text") is the raw text
The loader reads the first of these that is present, in that order.

Design choices, one line each:
- Pre-tokenized ids are stored whole, not cut to a sequence length: seq_len is a training choice.
- `encode_text_meta.json` beside the shards records a tokenizer fingerprint (text vocabulary size and
  the ids of a fixed probe sentence); the loader refuses shards written with another tokenizer.
- Over-long documents are cut into pieces of at most seq_len tokens of `<bos> text <eos>`; a piece is
  its own document (nothing attends across pieces), keeps the true next token as the target of its
  last position, and restarts positions at 0. No <bos>/<eos> is inserted at a cut, so the model never
  sees a document boundary that is not there.
- An empty document is skipped (not counted as bad data): it has nothing to learn from.
- Shard files are written to `.tmp` and renamed, with a fixed mtime: reruns give identical bytes.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import webdataset as wds

from unimodal.config import ConfigError
from unimodal.data.sequences import IGNORE, Document, text_document
from unimodal.model.vocabulary import Vocabulary

TEXT_META_FILE = "encode_text_meta.json"
PROBE_TEXT = "The quick brown fox jumps over the lazy dog; 0123456789 (a red circle)."


def tokenizer_fingerprint(vocab: Vocabulary) -> dict:
    return {"text_size": vocab.text_size, "probe_ids": vocab.encode_text(PROBE_TEXT)}


def check_text_shard_meta(shards: list[str], vocab: Vocabulary, where: str) -> None:
    """Where a shard folder has encode_text_meta.json, its tokenizer must be this vocabulary's."""
    ours = tokenizer_fingerprint(vocab)
    for folder in sorted({Path(s).parent for s in shards if "://" not in s}):
        meta_path = folder / TEXT_META_FILE
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("tokenizer") is not None and meta["tokenizer"] != ours:
            raise ConfigError(f"{where}: {meta_path} was written with a different text tokenizer "
                              "than this vocabulary's (fingerprint differs); re-encode the shards "
                              "or use the matching vocabulary")


# ------------------------------------------------------------------------------------ writing
def text_record(key: str, ids: list[int] | None, text: str | None) -> dict:
    rec = {"__key__": key}
    if ids is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(ids, dtype=np.int32))
        rec["ids.npy"] = buf.getvalue()
    if text is not None:
        rec["txt"] = text.encode("utf-8")
    return rec


def write_shard(path: Path, records: Iterable[dict]) -> int:
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "wb") as f, wds.TarWriter(f, mtime=0) as sink:
        for rec in records:
            sink.write(rec)
            count += 1
    os.replace(tmp, path)
    return count


def write_text_shards(documents: Iterable[str], out_dir: str | Path, vocab: Vocabulary | None,
                      shard_size: int = 10000, keep_text: bool = True) -> dict:
    """Documents -> shard-XXXXXX.tar; ids.npy when `vocab` is given, txt when keep_text (or raw)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if vocab is None and not keep_text:
        raise ValueError("without a tokenizer the shards hold raw text: keep_text must be True")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = docs = tokens = 0
    chunk: list[dict] = []

    def flush() -> None:
        nonlocal shards, chunk
        write_shard(out_dir / f"shard-{shards:06d}.tar", chunk)
        shards, chunk = shards + 1, []

    for doc in documents:
        ids = vocab.encode_text(doc) if vocab is not None else None
        tokens += len(ids) if ids is not None else 0
        chunk.append(text_record(f"{docs:010d}", ids, doc if keep_text else None))
        docs += 1
        if len(chunk) == shard_size:
            flush()
    if chunk:
        flush()
    meta = {"format": "unimodal-text-shards", "documents": docs, "shards": shards,
            "tokens": tokens if vocab is not None else None, "pretokenized": vocab is not None,
            "tokenizer": tokenizer_fingerprint(vocab) if vocab is not None else None}
    (out_dir / TEXT_META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


# ------------------------------------------------------------------------------------ reading
def text_sample_ids(raw: dict, vocab: Vocabulary, jsonl_field: str = "text") -> list[int]:
    """The token ids of one text sample; ValueError when it is unusable (counted as bad data)."""
    if "ids.npy" in raw:
        ids = np.load(io.BytesIO(raw["ids.npy"]), allow_pickle=False)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids.npy must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab.text_size):
            raise ValueError(f"ids.npy has ids outside [0, {vocab.text_size}) (another tokenizer?)")
        return ids.tolist()
    if "txt" in raw:
        return vocab.encode_text(raw["txt"].decode("utf-8"))
    for name in ("json", "jsonl"):
        if name in raw:
            record = json.loads(raw[name])
            text = record.get(jsonl_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"{name} has no string field {jsonl_field!r}")
            return vocab.encode_text(text)
    raise ValueError(f"no text field (ids.npy, txt or json); fields {sorted(k for k in raw if not k.startswith('__'))}")


def text_pieces(vocab: Vocabulary, ids: list[int], seq_len: int) -> list[Document]:
    """`<bos> ids <eos>` as one document, or cut into pieces of <= seq_len tokens (see the docstring)."""
    if len(ids) + 2 <= seq_len:
        return [text_document(vocab, ids)]
    seq = [vocab.bos_id, *ids, vocab.eos_id]
    targets = seq[1:] + [IGNORE]
    pieces = []
    for start in range(0, len(seq), seq_len):
        piece_targets = targets[start:start + seq_len]
        if all(t == IGNORE for t in piece_targets):
            break  # a last piece of only <eos> has nothing to predict
        n = len(piece_targets)
        pieces.append(Document(seq[start:start + n], piece_targets, list(range(n)), [-1] * n))
    return pieces
