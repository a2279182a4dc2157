"""Folder and webdataset image sources: class ids, captions, preprocessing, bad-data handling."""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from unimodal.data.image_sources import (
    HELDOUT_EVERY,
    BadSampleCounter,
    DataError,
    ImageDataConfig,
    ImageFolderSource,
    WebDatasetImageSource,
    build_image_dataset,
    collate_skip_none,
)

wds = pytest.importorskip("webdataset")

COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def solid(color, size=(20, 12)) -> Image.Image:
    return Image.new("RGB", size, color)


def image_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def noise_png_bytes(side=64, seed=0) -> bytes:
    # noise does not compress, so a cut in the middle really cuts pixel data
    arr = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return image_bytes(Image.fromarray(arr), "PNG")


def items(ds) -> list:
    return [ds[i] for i in range(len(ds))]


# --- folder ------------------------------------------------------------------------------------

def test_class_subfolders_give_sorted_class_ids(tmp_path):
    # created out of order, with a colour per class so the pixels prove which file was read
    for name, ext in [("green", ".jpg"), ("red", ".png"), ("blue", ".webp")]:
        (tmp_path / name).mkdir()
        for j in range(2):
            solid(COLORS[name]).save(tmp_path / name / f"img{j}{ext}")
    (tmp_path / ".hidden").mkdir()
    solid((0, 0, 0)).save(tmp_path / ".hidden" / "x.png")
    ds = ImageFolderSource(tmp_path, 16)
    assert ds.class_names == ["blue", "green", "red"]
    assert len(ds) == 6
    for s in items(ds):
        cls = s["key"].split("/")[0]
        assert s["class_id"] == ds.class_names.index(cls)
        assert s["caption"] == "" and s["image"].shape == (3, 16, 16)
        channel = ["red", "green", "blue"].index(cls)
        assert s["image"][channel].mean() > 0.9  # lossy webp/jpg: not exactly 1
        assert s["image"][[c for c in range(3) if c != channel]].mean() < -0.9


def test_flat_folder_class_minus_one_and_sidecar_captions(tmp_path):
    solid(COLORS["red"]).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red thing\n")
    (tmp_path / "sub").mkdir()
    solid(COLORS["blue"]).save(tmp_path / "sub" / "b.JPG")
    (tmp_path / "notes.md").write_text("not an image")
    ds = ImageFolderSource(tmp_path, 8)
    assert ds.class_names == []
    got = {s["key"]: s for s in items(ds)}
    assert set(got) == {"a", "sub/b"}
    assert got["a"]["caption"] == "a red thing" and got["sub/b"]["caption"] == ""
    assert all(s["class_id"] == -1 for s in got.values())


@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_resize_shorter_side_then_center_crop(tmp_path, size):
    # red 80 px at both ends of the long side, green between: resizing the short side 100 -> 32 maps
    # the red to < 26 px of 96, so a centre crop is pure green; squashing or no crop would keep red
    w, h = size
    img = Image.new("RGB", size, COLORS["red"])
    img.paste(COLORS["green"], (80, 0, w - 80, h) if w > h else (0, 80, w, h - 80))
    img.save(tmp_path / "x.png")
    x = ImageFolderSource(tmp_path, 32)[0]["image"]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert torch.allclose(x[1], torch.ones(32, 32)) and torch.allclose(x[0], -torch.ones(32, 32))


def test_rgba_and_grayscale_become_rgb(tmp_path):
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(tmp_path / "a.png")  # fully transparent -> white
    Image.new("L", (10, 10), 0).save(tmp_path / "b.png")
    a, b = items(ImageFolderSource(tmp_path, 8))
    assert torch.allclose(a["image"], torch.ones(3, 8, 8))
    assert torch.allclose(b["image"], -torch.ones(3, 8, 8))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (16, 16), COLORS["red"])
    img.paste(COLORS["green"], (0, 8, 16, 16))  # stored: red on top
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180 for display
    img.save(tmp_path / "a.jpg", exif=exif, quality=95)
    x = ImageFolderSource(tmp_path, 16)[0]["image"]
    assert x[1, :4].mean() > 0.9 and x[0, -4:].mean() > 0.9  # displayed: green on top


def write_corrupt_files(root):
    (root / "zero.jpg").write_bytes(b"")
    (root / "random.jpg").write_bytes(os.urandom(2000))
    data = noise_png_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    for i in range(5):
        solid(COLORS["green"]).save(tmp_path / f"good{i}.png")
    write_corrupt_files(tmp_path)
    counter = BadSampleCounter(max_bad_fraction=0.05)
    ds = ImageFolderSource(tmp_path, 8, counter)
    results = {ds.items[i][2]: ds[i] for i in range(len(ds))}
    assert {k for k, v in results.items() if v is None} == {"zero", "random", "truncated"}
    assert counter.total_seen == 8 and counter.total_bad == 3  # under min_samples: no error yet
    assert "3 bad of 8" in counter.summary() and str(tmp_path) in counter.summary()
    loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate_skip_none, num_workers=0)
    (batch,) = list(loader)
    assert batch["image"].shape == (5, 3, 8, 8) and len(batch["key"]) == 5


def test_too_many_bad_files_raise_data_error_naming_source(tmp_path):
    for i in range(20):
        solid(COLORS["green"]).save(tmp_path / f"good{i:02d}.png")
    write_corrupt_files(tmp_path)
    ds = ImageFolderSource(tmp_path, 8, BadSampleCounter(max_bad_fraction=0.05, min_samples=20))
    with pytest.raises(DataError) as err:
        items(ds)
    msg = str(err.value)
    assert str(tmp_path) in msg and re.search(r"\b[23] of 2[0-3] samples", msg)
    assert isinstance(err.value, RuntimeError)


def test_one_early_bad_file_is_tolerated(tmp_path):
    (tmp_path / "000.jpg").write_bytes(b"")  # first in sorted order
    for i in range(40):
        solid(COLORS["green"]).save(tmp_path / f"good{i:02d}.png")
    counter = BadSampleCounter(max_bad_fraction=0.05)
    assert sum(s is None for s in items(ImageFolderSource(tmp_path, 8, counter))) == 1
    assert counter.total_bad == 1


def test_all_bad_fails_once_min_samples_seen(tmp_path):
    for i in range(25):
        (tmp_path / f"bad{i:02d}.jpg").write_bytes(b"nope")
    ds = ImageFolderSource(tmp_path, 8, BadSampleCounter(min_samples=20))
    for i in range(19):
        assert ds[i] is None
    with pytest.raises(DataError, match="20 of 20"):
        ds[19]


def test_fraction_checked_when_min_samples_reached_by_a_good_file(tmp_path):
    for i in range(3):
        (tmp_path / f"a_bad{i}.jpg").write_bytes(b"")
    for i in range(17):
        solid(COLORS["green"]).save(tmp_path / f"good{i:02d}.png")
    ds = ImageFolderSource(tmp_path, 8, BadSampleCounter(min_samples=20))
    for i in range(19):
        ds[i]
    with pytest.raises(DataError, match="3 of 20"):
        ds[19]  # a good file, but the source is 15% bad


def test_collate_skip_none():
    s = {"image": torch.zeros(3, 4, 4), "class_id": 3, "caption": "c", "key": "k"}
    batch = collate_skip_none([None, s, dict(s, class_id=-1, key="k2"), None])
    assert batch["image"].shape == (2, 3, 4, 4)
    assert batch["class_id"].dtype == torch.long and batch["class_id"].tolist() == [3, -1]
    assert batch["caption"] == ["c", "c"] and batch["key"] == ["k", "k2"]
    assert collate_skip_none([None, None]) is None


# --- webdataset ----------------------------------------------------------------------------------

def write_shard(path, start, n, bad_keys=()):
    with wds.TarWriter(str(path)) as sink:
        for i in range(start, start + n):
            key = f"s{i:04d}"
            sample = {"__key__": key, "cls": str(i % 7), "txt": f"caption {i}"}
            if key in bad_keys:
                sample["jpg"] = os.urandom(500)
            elif i % 2:
                sample["jpg"] = image_bytes(solid((i, 0, 0)), "JPEG")
            else:
                sample["png"] = noise_png_bytes(32, seed=i)
            sink.write(sample)


def test_webdataset_round_trip_with_pattern(tmp_path):
    for s in range(3):
        write_shard(tmp_path / f"shard-{s:06d}.tar", 4 * s, 4)
    pattern = f"{tmp_path}/shard-{{000000..000001}}.tar,{tmp_path}/shard-000002.tar"
    counter = BadSampleCounter()
    samples = list(WebDatasetImageSource(pattern, 16, counter))
    assert [s["key"] for s in samples] == [f"s{i:04d}" for i in range(12)]
    assert [s["class_id"] for s in samples] == [i % 7 for i in range(12)]
    assert [s["caption"] for s in samples] == [f"caption {i}" for i in range(12)]
    assert all(s["image"].shape == (3, 16, 16) for s in samples)
    assert counter.total_seen == 12 and counter.total_bad == 0


def test_webdataset_without_cls_txt_defaults(tmp_path):
    with wds.TarWriter(str(tmp_path / "a.tar")) as sink:
        sink.write({"__key__": "x", "webp": image_bytes(solid((0, 0, 255)), "WEBP")})
    (s,) = list(WebDatasetImageSource(str(tmp_path / "a.tar"), 8))
    assert s["class_id"] == -1 and s["caption"] == "" and s["key"] == "x"


def test_webdataset_bad_sample_counted(tmp_path):
    write_shard(tmp_path / "a.tar", 0, 6, bad_keys={"s0003"})
    counter = BadSampleCounter()
    keys = [s["key"] for s in WebDatasetImageSource(str(tmp_path / "a.tar"), 8, counter)]
    assert keys == ["s0000", "s0001", "s0002", "s0004", "s0005"]
    assert counter.bad == {str(tmp_path / "a.tar"): 1}


def test_truncated_shard_is_skipped_and_others_read(tmp_path, caplog):
    paths = [tmp_path / f"shard-{s}.tar" for s in range(3)]
    for s, p in enumerate(paths):
        write_shard(p, 4 * s, 4)
    with tarfile.open(paths[1]) as tf:  # cut in the middle of the third member's data
        m = tf.getmembers()[2]
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: m.offset_data + m.size // 2])
    counter = BadSampleCounter()
    with caplog.at_level(logging.WARNING):
        keys = [s["key"] for s in WebDatasetImageSource([str(p) for p in paths], 8, counter)]
    assert set(f"s{i:04d}" for i in [0, 1, 2, 3, 8, 9, 10, 11]) <= set(keys)
    assert "s0004" not in keys  # its png was cut
    assert counter.bad == {str(paths[1]): 1}
    assert any(str(paths[1]) in r.getMessage() for r in caplog.records)


def test_webdataset_all_bad_raises(tmp_path):
    write_shard(tmp_path / "a.tar", 0, 3, bad_keys={"s0000", "s0001", "s0002"})
    with pytest.raises(DataError, match="no readable samples"):
        list(WebDatasetImageSource(str(tmp_path / "a.tar"), 8))


def test_webdataset_only_shard_truncated_is_not_fatal(tmp_path):
    write_shard(tmp_path / "a.tar", 0, 2)
    data = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "a.tar").write_bytes(data[:700])  # inside the first member's data
    counter = BadSampleCounter()
    assert list(WebDatasetImageSource(str(tmp_path / "a.tar"), 8, counter)) == []
    assert counter.total_bad == 1


def test_webdataset_missing_shard_fails_early(tmp_path):
    write_shard(tmp_path / "a-0.tar", 0, 2)
    with pytest.raises(FileNotFoundError, match="1 of 2"):
        WebDatasetImageSource(f"{tmp_path}/a-{{0..1}}.tar", 8)


def test_webdataset_workers_split_shards_without_duplicates(tmp_path):
    for s in range(4):
        write_shard(tmp_path / f"shard-{s}.tar", 3 * s, 3)
    ds = WebDatasetImageSource(f"{tmp_path}/shard-{{0..3}}.tar", 8)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_skip_none)
    keys = [k for b in loader for k in b["key"]]
    assert sorted(keys) == [f"s{i:04d}" for i in range(12)]


# --- config and splits ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw, key", [
    ({"source": "imagenet"}, "data.source"),
    ({"source": "folder"}, "data.path"),
    ({"source": "webdataset", "path": "  "}, "data.path"),
    ({"image_size": 0}, "data.image_size"),
    ({"num_samples": 0}, "data.num_samples"),
    ({"heldout_samples": -1}, "data.heldout_samples"),
    ({"max_bad_fraction": 1.5}, "data.max_bad_fraction"),
    ({"num_workers": -1}, "data.num_workers"),
])
def test_config_validate_names_key(kw, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ImageDataConfig(**kw).validate()


def test_default_config_is_valid_and_bad_values_are_named():
    assert ImageDataConfig().validate() is None  # shapes needs no path
    ImageDataConfig(source="folder", path="/some/where").validate()
    for kw, key in ((dict(source="folder"), "data.path"), (dict(source="s3"), "data.source"),
                    (dict(image_size=4), "data.image_size"), (dict(num_workers=-1), "data.num_workers"),
                    (dict(max_bad_fraction=1.5), "data.max_bad_fraction")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            ImageDataConfig(**kw).validate()


def test_folder_train_and_heldout_are_disjoint_and_cover_all(tmp_path):
    for i in range(3 * HELDOUT_EVERY):
        solid((i % 256, 0, 0), (4, 4)).save(tmp_path / f"{i:04d}.png")
    cfg = ImageDataConfig(source="folder", path=str(tmp_path), image_size=8)
    train, held = build_image_dataset(cfg, "train"), build_image_dataset(cfg, "heldout")
    tk, hk = {it[2] for it in train.items}, {it[2] for it in held.items}
    assert tk.isdisjoint(hk) and len(tk | hk) == 3 * HELDOUT_EVERY and 0 < len(hk) < 10
    with pytest.raises(ValueError, match="split"):
        build_image_dataset(cfg, "test")


def test_shapes_splits():
    pytest.importorskip("unimodal.data.shapes")
    cfg = ImageDataConfig(num_samples=5, heldout_samples=3, image_size=32)
    train, held = build_image_dataset(cfg, "train"), build_image_dataset(cfg, "heldout")
    assert len(train) == 5 and len(held) == 3
    assert {train[i]["key"] for i in range(5)}.isdisjoint(held[i]["key"] for i in range(3))
    assert held[0]["image"].shape == (3, 32, 32)


def test_tokenizer_resume_on_webdataset_is_refused_unless_allowed(tmp_path):
    """Known gap, refused with a clear message: a webdataset stream restarts at its first shard."""
    from tokenizer_training_fixtures import tiny_args, train_main
    from unimodal.config import ConfigError

    for s in range(2):
        write_shard(tmp_path / f"shard-{s:06d}.tar", 20 * s, 20)
    data = ["data.source=webdataset", f"data.path={tmp_path}/shard-{{000000..000001}}.tar",
            "train.checkpoint_every=2", "train.eval_images=2"]
    main = train_main()
    main(tiny_args(tmp_path / "run", 2, *data))
    with pytest.raises(ConfigError, match="allow_inexact_resume"):
        main(tiny_args(tmp_path / "run", 3, *data) + ["--resume"])
    metrics = main(tiny_args(tmp_path / "run", 3, *data, "train.allow_inexact_resume=true") + ["--resume"])
    assert metrics["step"] == 3
