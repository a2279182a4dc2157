"""Tests for the procedural shapes dataset: determinism, geometry, captions, rendering, dataset API."""

import colorsys
import re

import numpy as np
import pytest
import torch

from unimodal.data.shapes import (
    COLORS,
    NUM_CLASSES,
    SHAPES,
    Background,
    ShapeObject,
    ShapesDataset,
    caption_for,
    class_name,
    render_objects,
    render_sample,
)

N = 300  # samples per property check; ~0.1 s at 32 px


def samples(image_size=32, seed=0, n=N):
    return [render_sample(i, seed=seed, image_size=image_size) for i in range(n)]


def expected_relation(a, b):
    """Independent restatement of the caption rule: a relative to b by the dominant axis, y down."""
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    if abs(dx) >= abs(dy):
        return "to the right of" if dx > 0 else "to the left of"
    return "below" if dy > 0 else "above"


def with_article(obj):
    return f"{'an' if obj.color == 'orange' else 'a'} {obj.color} {obj.shape}"


def test_determinism_and_seed_dependence():
    for i in range(20):
        a, b = render_sample(i, seed=3), render_sample(i, seed=3)
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.caption, a.objects, a.background, a.class_id) == (b.caption, b.objects, b.background, b.class_id)
        assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    differ_seed = sum(render_sample(i, 3).image.tobytes() != render_sample(i, 4).image.tobytes() for i in range(20))
    differ_index = sum(render_sample(i, 3).image.tobytes() != render_sample(i + 1, 3).image.tobytes() for i in range(20))
    assert differ_seed == 20 and differ_index == 20


def test_same_scene_at_every_size():
    for i in range(30):
        small, mid, big = (render_sample(i, seed=1, image_size=s) for s in (32, 64, 256))
        assert small.objects == mid.objects == big.objects
        assert small.caption == mid.caption == big.caption
        assert small.background == mid.background == big.background
        assert small.class_id == mid.class_id == big.class_id
        assert big.image.shape == (256, 256, 3) and small.image.shape == (32, 32, 3)
        # Same picture: the big image box-downsampled to 32 px is close to the 32 px render.
        pooled = big.image.reshape(32, 8, 32, 8, 3).mean(axis=(1, 3))
        assert np.abs(pooled - small.image).mean() < 4.0


def test_class_id_is_primary_object_color_and_shape():
    assert NUM_CLASSES == len(COLORS) * len(SHAPES)
    names = [class_name(c) for c in range(NUM_CLASSES)]
    assert len(set(names)) == NUM_CLASSES
    assert class_name(0) == f"{next(iter(COLORS))} {SHAPES[0]}"
    with pytest.raises(ValueError):
        class_name(NUM_CLASSES)
    seen = set()
    for s in samples():
        primary = s.objects[0]
        assert primary.size == max(o.size for o in s.objects)
        assert class_name(s.class_id) == f"{primary.color} {primary.shape}"
        assert s.class_id == list(COLORS).index(primary.color) * len(SHAPES) + SHAPES.index(primary.shape)
        seen.add(s.class_id)
    assert len(seen) == NUM_CLASSES  # 300 samples cover all 28 classes


def test_caption_names_objects_and_correct_relations():
    counts, prefixes = {1: 0, 2: 0, 3: 0}, set()
    for s in samples():
        objs, cap = s.objects, s.caption
        counts[len(objs)] += 1
        for o in objs:
            assert f"{o.color} {o.shape}" in cap, (cap, o)
        prefixes.add(cap.split(with_article(objs[0]))[0])
        if len(objs) == 1:
            dx, dy = objs[0].center[0] - 0.5, objs[0].center[1] - 0.5
            if max(abs(dx), abs(dy)) < 0.1:
                word = "in the center"
            elif abs(dx) >= abs(dy):
                word = "on the right" if dx > 0 else "on the left"
            else:
                word = "at the bottom" if dy > 0 else "at the top"
            assert cap.endswith(f"{with_article(objs[0])} {word}"), cap
            continue
        a, b = objs[0], objs[1]
        assert f"{with_article(a)} {expected_relation(a, b)} {with_article(b)}" in cap, cap
        if len(objs) == 3:
            c = objs[2]
            forms = (
                f" and {expected_relation(a, c)} {with_article(c)}",
                f", and {with_article(c)} {expected_relation(c, a)} the {a.color} {a.shape}",
            )
            assert cap.endswith(forms), cap
    assert min(counts.values()) > N // 5  # 1, 2 and 3 objects all occur
    assert len(prefixes) >= 3  # phrasing varies


def test_caption_for_known_layouts():
    top = ShapeObject("circle", "red", (0.5, 0.2), 0.15)
    bottom = ShapeObject("square", "blue", (0.45, 0.8), 0.15)
    right = ShapeObject("triangle", "orange", (0.85, 0.25), 0.1)
    assert caption_for([top, bottom]) == "a red circle above a blue square"
    assert caption_for([bottom, top]) == "a blue square below a red circle"
    assert caption_for([top, bottom, right]) == "a red circle above a blue square and to the left of an orange triangle"
    assert caption_for([ShapeObject("diamond", "green", (0.2, 0.55), 0.2)]) == "a green diamond on the left"
    assert caption_for([ShapeObject("diamond", "green", (0.52, 0.45), 0.2)]) == "a green diamond in the center"


def test_objects_inside_image_apart_and_unambiguous():
    for s in samples():
        colors = [o.color for o in s.objects]
        assert len(set(colors)) == len(colors)  # one colour per object within an image
        for o in s.objects:
            assert o.shape in SHAPES and o.color in COLORS
            assert 0.11 <= o.size <= 0.3
            for v in o.center:
                assert o.size < v < 1 - o.size
        for i, a in enumerate(s.objects):
            for b in s.objects[i + 1 :]:
                dx, dy = abs(a.center[0] - b.center[0]), abs(a.center[1] - b.center[1])
                # Bounding boxes disjoint along the dominant axis, and that axis clearly dominant.
                assert max(dx, dy) > a.size + b.size
                assert max(dx, dy) >= 1.25 * min(dx, dy)


def saturation(rgb):
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255.0))[1]


@pytest.mark.parametrize("image_size", [32, 64])
def test_pixels_match_attributes(image_size):
    palette = np.array(list(COLORS.values()), dtype=float)
    for s in samples(image_size=image_size, n=150):
        img = s.image.astype(float)
        for o in s.objects:
            x = min(int(o.center[0] * image_size), image_size - 1)
            y = min(int(o.center[1] * image_size), image_size - 1)
            assert np.abs(img[y, x] - COLORS[o.color]).max() <= 12, (s.caption, o, img[y, x])
        for end in (s.background.start, s.background.end):
            assert saturation(end) <= 0.21
            assert np.linalg.norm(palette - np.asarray(end, float), axis=1).min() > 100
        # Every pixel outside all (slightly grown) bounding boxes is unsaturated background.
        yy, xx = (np.mgrid[0:image_size, 0:image_size] + 0.5) / image_size
        outside = np.ones((image_size, image_size), bool)
        for o in s.objects:
            grow = o.size + 1.5 / image_size
            outside &= (np.abs(xx - o.center[0]) > grow) | (np.abs(yy - o.center[1]) > grow)
        px = img[outside] / 255.0
        sat = (px.max(1) - px.min(1)) / np.maximum(px.max(1), 1e-6)
        assert sat.max() <= 0.22, s.caption
        # And the object colours really are present: each covers a fair share of its box.
        for o in s.objects:
            close = np.abs(img - COLORS[o.color]).max(axis=2) <= 12
            area = (2 * o.size * image_size) ** 2
            assert close.sum() >= 0.25 * area, (s.caption, o)


def test_render_objects_with_plain_background():
    objs = (ShapeObject("square", "yellow", (0.25, 0.5), 0.15), ShapeObject("circle", "cyan", (0.75, 0.5), 0.15))
    img = render_objects(objs, (40, 40, 40), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[32, 16]) == COLORS["yellow"] and tuple(img[32, 48]) == COLORS["cyan"]
    assert tuple(img[2, 2]) == (40, 40, 40) and tuple(img[60, 32]) == (40, 40, 40)
    grad = render_objects((), Background((20, 20, 20), (60, 60, 60), "horizontal"), 32)
    assert tuple(grad[5, 0]) == (20, 20, 20) and tuple(grad[5, 31]) == (60, 60, 60)
    assert (np.diff(grad[..., 0].astype(int), axis=1) >= 0).all() and (grad[0] == grad[31]).all()
    with pytest.raises(ValueError, match="hexagon"):
        render_objects((ShapeObject("hexagon", "red", (0.5, 0.5), 0.2),), (0, 0, 0), 32)


def test_dataset_items_and_disjoint_splits():
    train, held_out = ShapesDataset(8, image_size=48, seed=5), ShapesDataset(4, image_size=48, seed=5, offset=8)
    assert len(train) == 8 and len(held_out) == 4
    item = train[3]
    assert set(item) == {"image", "class_id", "caption", "key"}
    image = item["image"]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert image.min() >= -1.0 and image.max() <= 1.0 and image.max() - image.min() > 0.5
    expected = render_sample(3, seed=5, image_size=48)
    assert torch.equal(image, torch.from_numpy(expected.image).permute(2, 0, 1).float() / 127.5 - 1.0)
    assert item["class_id"] == expected.class_id and isinstance(item["class_id"], int)
    assert item["caption"] == expected.caption and item["key"] == "shapes-5-00000003"
    assert held_out[0]["key"] == "shapes-5-00000008"
    assert held_out.sample(0).objects == render_sample(8, seed=5).objects
    train_keys = {train[i]["key"] for i in range(len(train))}
    assert train_keys.isdisjoint(held_out[i]["key"] for i in range(len(held_out)))
    with pytest.raises(IndexError):
        train[8]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["image"].shape == (4, 3, 48, 48) and len(batch["caption"]) == 4


@pytest.mark.parametrize("bad", [0, 16, 31, 257, 1024, 64.0])
def test_bad_image_size_raises(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_sample(0, image_size=bad)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        ShapesDataset(4, image_size=bad)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        render_objects((), (0, 0, 0), bad)


def test_render_benchmark_script_runs():
    """Rendering speed is a benchmark (eval/bench_shapes.py), not a timing assert in the suite."""
    from unified_fixtures import load_script

    rows = load_script("eval/bench_shapes.py").main(["sizes=[32]", "images=3", "repeats=1"])
    assert rows[0][0] == 32 and rows[0][1] > 0
