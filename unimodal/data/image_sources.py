"""Real image input for the image tokenizer: a folder of images or webdataset tar shards.

Design choices:
- Samples: {"image": float32 3xSxS in [-1, 1], "class_id": int (-1 = none), "caption": str, "key": str}.
- Preprocessing: EXIF-rotate, composite transparency on white, RGB, bicubic (antialiased) resize of
  the shorter side to S, centre crop SxS. JPEGs are draft-decoded at >= S to skip full-size decoding.
- Folder: class mode when the root holds only subfolders (class id = index in sorted names), else
  flat (recursive, class -1). Hidden files/dirs are ignored; a sidecar `<stem>.txt` is the caption.
- Webdataset: image from jpg/jpeg/png/webp, optional `cls` (int) and `txt`; decoding is ours (not
  wds.decode) so every bad sample is counted. Shards are split over DDP ranks and DataLoader workers;
  shard order is as given (shards are expected to be pre-shuffled).
- A truncated/unreadable shard counts as one bad sample of that shard; iteration moves to the next
  (a cut exactly at a tar header boundary looks like a normal end of the tar and is not detectable).
- Bad data is counted per source (folder root or shard path) by BadSampleCounter; a source fails
  with DataError once it has >= min_samples (20) seen and more than max_bad_fraction (default 0.05)
  bad: 5% tolerates the odd corrupt file in web-scraped data but stops on a systematically broken source.
- Counters live in the process that reads the data: with DataLoader workers each worker checks its
  own counts (a copy of the counter); the caller's counter object only sees counts for num_workers=0.
- Held-out split for folder/webdataset: deterministic 1-in-HELDOUT_EVERY by crc32 of the key, so
  train and held-out never overlap and the split is the same on every machine and in every run.
  `heldout_samples`/`num_samples` apply to shapes only.
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
HELDOUT_EVERY = 100  # 1% of a folder/webdataset source is held out
SOURCES = ("shapes", "folder", "webdataset")


class DataError(RuntimeError):
    """Too much of a data source is unreadable; the message names the source and the counts."""


class BadSampleCounter:
    """Counts seen/bad samples per source; raises DataError when a source is too broken.

    The check applies only once a source has `min_samples` seen, so one early bad file does not
    stop a run, while a source that is all bad fails after `min_samples` files.
    """

    def __init__(self, max_bad_fraction: float = 0.05, min_samples: int = 20, max_logged: int = 10,
                 kind: str = "image"):
        self.max_bad_fraction, self.min_samples, self.kind = max_bad_fraction, min_samples, kind
        self.max_logged = max_logged
        self.seen: dict[str, int] = {}
        self.bad: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}  # first few failures per source, for the messages

    def good(self, source: str) -> None:
        self.seen[source] = self.seen.get(source, 0) + 1
        if self.seen[source] == self.min_samples:  # good samples only lower the fraction after this
            self.check(source)

    def record_bad(self, source: str, item: str, reason: str, count: int = 1) -> None:
        """`count` bad samples of `source` (a corrupt shard can lose several at once)."""
        self.seen[source] = self.seen.get(source, 0) + count
        self.bad[source] = self.bad.get(source, 0) + count
        examples = self.examples.setdefault(source, [])
        if len(examples) < self.max_logged:  # don't flood the log with a broken source
            examples.append(f"{item}: {reason}")
            log.warning("skipping bad sample %s in %s: %s", item, source, reason)
        self.check(source)

    def check(self, source: str) -> None:
        seen, bad = self.seen.get(source, 0), self.bad.get(source, 0)
        if seen >= self.min_samples and bad > self.max_bad_fraction * seen:
            raise DataError(
                f"data source {source}: {bad} of {seen} samples unreadable ({bad / seen:.1%} > "
                f"max_bad_fraction {self.max_bad_fraction:.1%}); e.g. "
                + "; ".join(self.examples[source][:3]))

    total_seen = property(lambda self: sum(self.seen.values()))
    total_bad = property(lambda self: sum(self.bad.values()))

    def summary(self) -> str:
        seen, bad = self.total_seen, self.total_bad
        lines = [f"{self.kind} data: {seen} samples seen, {bad} bad ({bad / max(seen, 1):.2%}) in this process"]
        for source in sorted(self.bad):
            lines.append(f"  {source}: {self.bad[source]} bad of {self.seen[source]}, "
                         f"e.g. {self.examples[source][0]}")
        return "\n".join(lines)


def preprocess(img: Image.Image, image_size: int) -> torch.Tensor:
    """PIL image -> float32 3xSxS in [-1, 1]: resize the shorter side to S, centre crop."""
    img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # plain convert("RGB") would expose whatever colour hides under transparent pixels
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    img = img.convert("RGB")
    w, h = img.size
    scale = image_size / min(w, h)
    nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)  # PIL's resize antialiases when shrinking
    left, top = (nw - image_size) // 2, (nh - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


def decode_image(data: bytes | str | Path, image_size: int) -> torch.Tensor:
    """Decode bytes or a file path fully (load() surfaces truncation now, not later)."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        img.draft("RGB", (image_size, image_size))  # JPEG only: DCT-downscaled decode, still >= S
        img.load()
        return preprocess(img, image_size)


def in_split(key: str, split: str | None) -> bool:
    """None = everything; 'heldout' = 1 in HELDOUT_EVERY keys by a stable hash; 'train' = the rest."""
    if split is None:
        return True
    heldout = zlib.crc32(key.encode("utf-8")) % HELDOUT_EVERY == 0
    return heldout if split == "heldout" else not heldout


class ImageFolderSource(torch.utils.data.Dataset):
    """root/<class>/**/*.jpg (class ids by sorted name) or flat root/**/*.jpg (class -1)."""

    def __init__(self, root: str | Path, image_size: int, counter: BadSampleCounter | None = None,
                 split: str | None = None):
        self.root, self.image_size = Path(root), image_size
        self.counter = counter if counter is not None else BadSampleCounter()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        children = [p for p in sorted(self.root.iterdir()) if not p.name.startswith(".")]
        has_top_images = any(p.is_file() and p.suffix.lower() in IMAGE_EXTS for p in children)
        class_dirs = [p for p in children if p.is_dir()]
        # Class mode only when nothing but subfolders is at the top, so a flat folder that also has
        # subfolders is not silently turned into classes.
        self.class_names = [p.name for p in class_dirs] if class_dirs and not has_top_images else []
        dirs = list(enumerate(class_dirs)) if self.class_names else [(-1, self.root)]
        self.items: list[tuple[Path, int, str]] = []
        for class_id, d in dirs:
            for p in sorted(d.rglob("*")):
                rel = p.relative_to(self.root)
                if p.suffix.lower() in IMAGE_EXTS and not any(x.startswith(".") for x in rel.parts):
                    key = rel.with_suffix("").as_posix()
                    if p.is_file() and in_split(key, split):
                        self.items.append((p, class_id, key))
        if not self.items:
            what = "" if split is None else f" in split {split!r} (heldout = 1 in {HELDOUT_EVERY} keys)"
            raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) found under {self.root}{what}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict | None:
        path, class_id, key = self.items[i]
        try:
            image = decode_image(path, self.image_size)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            self.counter.record_bad(str(self.root), key, f"{type(err).__name__}: {err}")
            return None
        self.counter.good(str(self.root))
        txt = path.with_suffix(".txt")
        caption = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
        return {"image": image, "class_id": class_id, "caption": caption, "key": key}


def expand_urls(urls: str | list[str]) -> list[str]:
    """Comma-separated and/or brace patterns ("a-{000..009}.tar") -> list of shard urls."""
    import braceexpand  # a webdataset dependency

    parts = [u.strip() for u in urls.split(",")] if isinstance(urls, str) else list(urls)
    return [s for part in parts if part for s in braceexpand.braceexpand(part)]


class WebDatasetImageSource(torch.utils.data.IterableDataset):
    """Images from webdataset shards; bad samples and broken shards are skipped and counted."""

    def __init__(self, urls: str | list[str], image_size: int, counter: BadSampleCounter | None = None,
                 split: str | None = None):
        self.shards, self.image_size, self.split = expand_urls(urls), image_size, split
        self.counter = counter if counter is not None else BadSampleCounter()
        if not self.shards:
            raise ValueError(f"no shards in {urls!r}")
        # A mistyped pattern would otherwise give an empty (or silently partial) dataset.
        local = [s for s in self.shards if "://" not in s and not s.startswith("pipe:")]
        missing = [s for s in local if not Path(s).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.shards)} shards not found, e.g. {missing[:3]}")

    def my_shards(self) -> list[str]:
        """This process's share: shards split over (DDP rank, DataLoader worker) without overlap."""
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.shards[rank * workers + worker::world * workers]

    def _sample(self, raw: dict, shard: str) -> dict | None:
        key = raw.get("__key__", "?")
        try:
            img_key = next((k for k in WDS_IMAGE_KEYS if k in raw), None)
            if img_key is None:
                raise ValueError(f"no image field (one of {WDS_IMAGE_KEYS}); fields {sorted(raw)}")
            image = decode_image(raw[img_key], self.image_size)
            class_id = int(raw["cls"].decode().strip()) if "cls" in raw else -1
            caption = raw["txt"].decode("utf-8", errors="replace").strip() if "txt" in raw else ""
        except Exception as err:  # any undecodable field makes the sample unusable
            self.counter.record_bad(shard, key, f"{type(err).__name__}: {err}")
            return None
        self.counter.good(shard)
        return {"image": image, "class_id": class_id, "caption": caption, "key": key}

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        yielded = bad_samples = 0
        bad_before = self.counter.total_bad
        for shard in self.my_shards():
            # One WebDataset per shard, splitting done above, so a read error ends only this shard.
            ds = wds.WebDataset([shard], shardshuffle=False, nodesplitter=None, workersplitter=None,
                                empty_check=False, handler=wds.reraise_exception)
            try:
                for raw in ds:
                    if not in_split(raw.get("__key__", ""), self.split):
                        continue
                    sample = self._sample(raw, shard)
                    if sample is None:
                        bad_samples += 1
                        continue
                    yielded += 1
                    yield sample
            except DataError:
                raise
            except Exception as err:  # truncated tar, I/O error: skip the rest of this shard
                log.warning("skipping rest of shard %s after read error: %s", shard, err)
                self.counter.record_bad(shard, "<tar stream>", f"{type(err).__name__}: {err}")
        if self.counter.total_bad > bad_before:
            log.warning("%s", self.counter.summary())
            # Every image this process decoded was bad: fail rather than train on nothing. A broken
            # shard alone does not count here, so one truncated shard per worker is still skipped.
            if yielded == 0 and bad_samples > 0:
                raise DataError(f"no readable samples in shards {self.my_shards()[:3]}: "
                                + self.counter.summary())


def collate_skip_none(batch: list[dict | None]) -> dict | None:
    """Drop None (bad) items; stack tensors, ints -> LongTensor, floats -> tensor, the rest as lists."""
    items = [b for b in batch if b is not None]
    if not items:
        return None  # the whole batch was bad: the training loop should skip it
    out = {}
    for k, v in items[0].items():
        vals = [it[k] for it in items]
        if isinstance(v, torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(v, int):
            out[k] = torch.tensor(vals, dtype=torch.long)
        elif isinstance(v, float):
            out[k] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[k] = vals
    return out


@dataclass
class ImageDataConfig:
    source: str = "shapes"          # "shapes" | "folder" | "webdataset"
    path: str = ""                  # folder root, or shard pattern(s) (comma-separated allowed)
    image_size: int = 64
    num_samples: int = 10000        # shapes only: size of the training split
    heldout_samples: int = 256      # shapes only: held-out split after the training split
    seed: int = 0
    max_bad_fraction: float = 0.05  # per source; checked after 20 samples of that source
    num_workers: int = 2

    def validate(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"data.{key}={getattr(self, key)!r}: {why}")

        if self.source not in SOURCES:
            raise bad("source", f"must be one of {SOURCES}")
        if self.source != "shapes" and not self.path.strip():
            raise bad("path", f"required for data.source={self.source!r} (a folder or shard pattern)")
        if self.image_size < 8:
            raise bad("image_size", "must be >= 8")
        if self.num_samples < 1:
            raise bad("num_samples", "must be >= 1")
        if self.heldout_samples < 0:
            raise bad("heldout_samples", "must be >= 0")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise bad("max_bad_fraction", "must be in [0, 1]")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")


def build_image_dataset(cfg: ImageDataConfig, split: str = "train",
                        counter: BadSampleCounter | None = None):
    """The dataset for `split` ("train" | "heldout"); see the module docstring for the split rules."""
    cfg.validate()
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}: must be 'train' or 'heldout'")
    if cfg.source == "shapes":
        from unimodal.data.shapes import ShapesDataset  # lazy: keep this module light to import

        if split == "train":
            return ShapesDataset(cfg.num_samples, cfg.image_size, cfg.seed, offset=0)
        return ShapesDataset(cfg.heldout_samples, cfg.image_size, cfg.seed, offset=cfg.num_samples)
    counter = counter if counter is not None else BadSampleCounter(cfg.max_bad_fraction)
    if cfg.source == "folder":
        return ImageFolderSource(cfg.path, cfg.image_size, counter, split=split)
    return WebDatasetImageSource(cfg.path, cfg.image_size, counter, split=split)
