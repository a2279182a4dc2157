"""Tiny shards for the data-pipeline tests, written on the spot in the real formats: text shards
(ids.npy / txt / json) and code shards (codes.npy uint16 T x h x w, seed.txt, cls, txt), plus ways
to break them (truncated tar, missing field, wrong shape, out-of-range codes)."""

import io
import json
import zlib
from pathlib import Path

import numpy as np
import webdataset as wds

from unimodal.data.mixture import DataConfig, SourceConfig

# The image setting of unified_fixtures.make_assets (its tiny tokenizer and vocabulary).
CODE_MAPS, GRID, CODEBOOK, LATENT_DIM, CLASSES = 4, (8, 8), 64, 8, 28
WORDS = ("red", "blue", "green", "circle", "square", "triangle", "above", "below", "left", "right")


def document_text(tag: str, index: int, rng: np.random.Generator, max_words: int = 12) -> str:
    """A unique, recognisable document: 'tag index' and a few words."""
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(1, max_words + 1))))
    return f"{tag} {index} {words}"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_tar(path: Path, records: list[dict]) -> str:
    with open(path, "wb") as f, wds.TarWriter(f, mtime=0) as sink:
        for rec in records:
            sink.write(rec)
    return str(path)


def text_shards(folder: Path, tag: str, shards: int, per_shard: int, vocab,
                field: str = "ids", max_words: int = 12) -> str:
    """Text shards tag-000000.tar...; field = ids (pre-tokenized), txt or json. Returns the pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    for s in range(shards):
        records = []
        for i in range(per_shard):
            text = document_text(tag, s * per_shard + i, rng, max_words)
            rec = {"__key__": f"{s:03d}-{i:05d}"}
            if field == "ids":
                rec["ids.npy"] = _npy(np.asarray(vocab.encode_text(text), dtype=np.int32))
            elif field == "txt":
                rec["txt"] = text.encode()
            else:
                rec["json"] = json.dumps({"text": text}).encode()
            records.append(rec)
        write_tar(folder / f"{tag}-{s:06d}.tar", records)
    return str(folder / f"{tag}-{{000000..{shards - 1:06d}}}.tar")


def code_record(key: str, rng: np.random.Generator, class_id: int | None = None,
                caption: str | None = None, shape=(CODE_MAPS, *GRID), high: int = CODEBOOK) -> dict:
    rec = {"__key__": key,
           "codes.npy": _npy(rng.integers(0, high, size=shape).astype(np.uint16)),
           "seed.txt": str(int(rng.integers(0, 2**62))).encode()}
    if class_id is not None:
        rec["cls"] = str(class_id).encode()
    if caption is not None:
        rec["txt"] = caption.encode()
    return rec


def code_shards(folder: Path, tag: str, shards: int, per_shard: int, kind: str,
                code_maps: int = CODE_MAPS) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    for s in range(shards):
        records = []
        for i in range(per_shard):
            n = s * per_shard + i
            if kind == "class_images":
                records.append(code_record(f"{s:03d}-{i:05d}", rng, class_id=n % CLASSES,
                                           shape=(code_maps, *GRID)))
            else:
                records.append(code_record(f"{s:03d}-{i:05d}", rng, shape=(code_maps, *GRID),
                                           caption=document_text(tag, n, rng, 6)))
        write_tar(folder / f"{tag}-{s:06d}.tar", records)
    return str(folder / f"{tag}-{{000000..{shards - 1:06d}}}.tar")


def truncate(path: str, keep_fraction: float = 0.6) -> None:
    """Cut a tar in the middle of a member (a crash while copying)."""
    data = Path(path).read_bytes()
    cut = int(len(data) * keep_fraction)
    cut += 100 if cut % 512 == 0 else 0  # never exactly at a header boundary
    Path(path).write_bytes(data[:cut])


def data_config(sources: list[tuple[str, str, str, float]], **kw) -> DataConfig:
    """sources: (name, kind, shards, weight)."""
    return DataConfig(sources=[SourceConfig(name=n, kind=k, shards=s, weight=w)
                               for n, k, s, w in sources],
                      **{"seq_len": 256, "rows_per_batch": 2, "num_workers": 0, **kw})
