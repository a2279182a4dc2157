"""Built-in procedural "shapes" dataset: 1-3 coloured geometric shapes with an English caption.

Design choices (the prompt-following checker relies on the first six):
- Objects use 7 saturated, hue-separated colours (HSV S >= 0.8, V >= 0.7); no white/black/grey.
- Backgrounds are unsaturated (HSV S <= 0.2) and dark (V <= 0.3) or light (V >= 0.72), solid or a
  gentle linear gradient, so a pixel's saturation alone tells object from background.
- The colours within one image are distinct (shapes may repeat), so "the red ..." names one object.
- Shapes are axis-aligned circle/square/triangle/diamond: no rotation, so square vs diamond stays clear.
- `size` is the half-extent of the object's axis-aligned bounding box; every shape fills its box's
  width and height, and bounding boxes are kept apart by a gap, so objects never overlap or touch.
- Every pair of objects is offset mostly along one axis (dominant offset >= 1.3x the other), so
  left/right/above/below in the caption is unambiguous; y grows downwards ("above" = smaller y).
- Class id = colour_index * len(SHAPES) + shape_index of the primary object, which is objects[0],
  the largest one (objects are sorted by size, largest first); NUM_CLASSES = 7 * 4 = 28.
- Captions name the primary object first and relate the others to it with a few seeded templates,
  e.g. "a red circle above a blue square and to the left of an orange triangle".
- The scene is a pure function of (index, seed) via numpy.random.default_rng((seed, index)); layout
  is in image fractions, so one (index, seed) is the same scene at every image size (32..256 px).
- Rendering draws at 4x with PIL and box-downsamples (anti-aliasing); well under 1 ms at 64 px.
- `ShapesSample.background` is a `Background` (two end colours + gradient direction);
  `render_objects` also accepts a plain RGB tuple for a solid background.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLORS: dict[str, RGB] = {
    "red": (230, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 25),
    "green": (30, 185, 50),
    "cyan": (25, 210, 225),
    "blue": (35, 75, 235),
    "purple": (150, 45, 215),
}
NUM_CLASSES: int = len(COLORS) * len(SHAPES)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 256
GRADIENT_DIRECTIONS: tuple[str, ...] = ("solid", "horizontal", "vertical", "diagonal")

_COLOR_NAMES = tuple(COLORS)
_SUPERSAMPLE = 4
# Per object count: the range of `size`; smaller when more objects must fit side by side. The
# lower bound keeps an object >= 7 px wide at 32 px.
_SIZE_RANGE = {1: (0.16, 0.28), 2: (0.13, 0.22), 3: (0.12, 0.17)}
_EDGE_MARGIN = 0.03  # between a bounding box and the image border
_GAP = 0.05  # between two bounding boxes along their dominant axis
_AXIS_RATIO = 1.3  # dominant offset / other offset, for an unambiguous position word
_CENTER_RADIUS = 0.1  # a single object this close to the middle is "in the center"
_MAX_LAYOUT_TRIES = 200


@dataclass(frozen=True)
class ShapeObject:
    shape: str  # one of SHAPES
    color: str  # one of COLORS
    center: tuple[float, float]  # (x, y) as fractions of the image side, y downwards
    size: float  # half-extent of the bounding box as a fraction of the image side

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Background:
    start: RGB  # colour at the top / left / top-left corner
    end: RGB  # colour at the opposite side; equal to start when direction == "solid"
    direction: str  # one of GRADIENT_DIRECTIONS


@dataclass(frozen=True)
class ShapesSample:
    image: np.ndarray  # uint8 H x W x 3
    class_id: int
    caption: str
    objects: tuple[ShapeObject, ...]  # objects[0] is the primary (largest) object
    background: Background


def check_image_size(image_size: int) -> None:
    if not isinstance(image_size, (int, np.integer)) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int in {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {image_size!r}")


def class_id_for(color: str, shape: str) -> int:
    return _COLOR_NAMES.index(color) * len(SHAPES) + SHAPES.index(shape)


def class_name(class_id: int) -> str:
    if not 0 <= class_id < NUM_CLASSES:
        raise ValueError(f"class_id must be in 0..{NUM_CLASSES - 1}, got {class_id!r}")
    color_index, shape_index = divmod(int(class_id), len(SHAPES))
    return f"{_COLOR_NAMES[color_index]} {SHAPES[shape_index]}"


# ----------------------------------------------------------------------------------------- captions
def relation(a: ShapeObject, b: ShapeObject) -> str:
    """Where `a` is relative to `b`, by the dominant axis of the offset between their centres."""
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def position_in_image(obj: ShapeObject) -> str:
    """Where a lone object sits in the frame, by the dominant axis of its offset from the middle."""
    dx, dy = obj.center[0] - 0.5, obj.center[1] - 0.5
    if max(abs(dx), abs(dy)) < _CENTER_RADIUS:
        return "in the center"
    if abs(dx) >= abs(dy):
        return "on the left" if dx < 0 else "on the right"
    return "at the top" if dy < 0 else "at the bottom"


def with_article(obj: ShapeObject) -> str:
    """"a red circle" / "an orange square" (also used by the moving-shapes captions)."""
    return ("an " if obj.color[0] in "aeiou" else "a ") + obj.name


_PREFIXES = ("", "there is ", "an image of ", "a picture of ")
NUM_CAPTION_VARIANTS = len(_PREFIXES) * 2  # prefix x sentence template (the template matters for 3)


def caption_for(objects: Sequence[ShapeObject], variant: int = 0) -> str:
    """English caption; objects[0] is named first and the others are placed relative to it.

    `variant` (0..NUM_CAPTION_VARIANTS-1) picks a prefix and, for three objects, one of two
    templates: "A rel B and rel C" or "A rel B, and C rel the A".
    """
    if not 1 <= len(objects) <= 3:
        raise ValueError(f"caption_for needs 1-3 objects, got {len(objects)}")
    prefix_index, template = divmod(int(variant) % NUM_CAPTION_VARIANTS, 2)
    first = objects[0]
    if len(objects) == 1:
        body = f"{with_article(first)} {position_in_image(first)}"
    else:
        body = f"{with_article(first)} {relation(first, objects[1])} {with_article(objects[1])}"
        if len(objects) == 3:
            third = objects[2]
            if template == 0:
                body += f" and {relation(first, third)} {with_article(third)}"
            else:
                body += f", and {with_article(third)} {relation(third, first)} the {first.name}"
    return _PREFIXES[prefix_index] + body


# ------------------------------------------------------------------------------------------- layout
def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]


def sample_background(rng: np.random.Generator) -> Background:
    light = bool(rng.random() < 0.5)
    value_range = (0.72, 0.92) if light else (0.1, 0.3)
    hue, sat, value = rng.random(), rng.uniform(0.0, 0.2), rng.uniform(*value_range)
    direction = GRADIENT_DIRECTIONS[int(rng.integers(len(GRADIENT_DIRECTIONS)))]
    start = _hsv_to_rgb(hue, sat, value)
    if direction == "solid":
        return Background(start, start, direction)
    # Gentle: a nearby hue and a value change of at most 0.12, staying inside the same value band.
    end_value = float(np.clip(value + rng.uniform(-0.12, 0.12), *value_range))
    end = _hsv_to_rgb(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.0, 0.2), end_value)
    return Background(start, end, direction)


def _layout_ok(centers: np.ndarray, sizes: np.ndarray) -> bool:
    if len(sizes) == 1:
        offset = np.abs(centers[0] - 0.5)
        return offset.max() < _CENTER_RADIUS or offset.max() >= _AXIS_RATIO * offset.min()
    for i in range(len(sizes)):
        for j in range(i + 1, len(sizes)):
            offset = np.abs(centers[i] - centers[j])
            dominant, other = offset.max(), offset.min()
            if dominant < sizes[i] + sizes[j] + _GAP or dominant < _AXIS_RATIO * other:
                return False
    return True


def _sample_layout(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (count x 2) and sizes (largest first) that satisfy the spacing rules above."""
    low, high = _SIZE_RANGE[count]
    for _ in range(_MAX_LAYOUT_TRIES):
        sizes = np.sort(rng.uniform(low, high, size=count))[::-1]
        lower = sizes + _EDGE_MARGIN
        centers = rng.uniform(lower[:, None], 1.0 - lower[:, None], size=(count, 2))
        if _layout_ok(centers, sizes):
            return centers, sizes
    # Rare fallback that always fits: smallest sizes in a shuffled horizontal row.
    sizes = np.full(count, low)
    xs = (rng.permutation(count) + 0.5) / count
    return np.stack([xs, np.full(count, 0.5)], axis=1), sizes


def _sample_objects(rng: np.random.Generator) -> tuple[ShapeObject, ...]:
    count = int(rng.integers(1, 4))
    colors = rng.choice(len(COLORS), size=count, replace=False)
    shapes = rng.integers(len(SHAPES), size=count)
    centers, sizes = _sample_layout(rng, count)
    return tuple(
        ShapeObject(
            shape=SHAPES[int(shapes[k])],
            color=_COLOR_NAMES[int(colors[k])],
            center=(round(float(centers[k, 0]), 4), round(float(centers[k, 1]), 4)),
            size=round(float(sizes[k]), 4),
        )
        for k in range(count)
    )


# ---------------------------------------------------------------------------------------- rendering
def _background_array(background: Background | Sequence[int], image_size: int) -> np.ndarray:
    if not isinstance(background, Background):
        rgb = tuple(int(c) for c in background)
        background = Background(rgb, rgb, "solid")  # type: ignore[arg-type]
    start = np.asarray(background.start, dtype=np.float32)
    end = np.asarray(background.end, dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, image_size, dtype=np.float32)
    if background.direction == "solid":
        t = np.zeros((image_size, image_size), dtype=np.float32)
    elif background.direction == "horizontal":
        t = np.broadcast_to(ramp[None, :], (image_size, image_size))
    elif background.direction == "vertical":
        t = np.broadcast_to(ramp[:, None], (image_size, image_size))
    elif background.direction == "diagonal":
        t = (ramp[:, None] + ramp[None, :]) * 0.5
    else:
        raise ValueError(f"unknown gradient direction {background.direction!r}")
    return np.rint(start + (end - start) * t[..., None]).astype(np.uint8)


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: int) -> None:
    # Fractions map to pixel-centre coordinates, so 0.5 is the exact middle of the canvas.
    x, y = obj.center[0] * side - 0.5, obj.center[1] * side - 0.5
    r = obj.size * side
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
    elif obj.shape == "triangle":  # apex up, base on the bottom edge of the box
        draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")


def render_objects(
    objects: Sequence[ShapeObject], background: Background | Sequence[int], image_size: int
) -> np.ndarray:
    """Draw `objects` over `background` (a Background or an RGB tuple); uint8 H x W x 3."""
    check_image_size(image_size)
    side = image_size * _SUPERSAMPLE
    # Nearest-upsampled background averages back to exactly the same pixels after the box reduce.
    canvas = Image.fromarray(_background_array(background, image_size)).resize((side, side), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        _draw_object(draw, obj, side)
    return np.array(canvas.reduce(_SUPERSAMPLE))


def render_sample(index: int, seed: int = 0, image_size: int = 64) -> ShapesSample:
    """The scene for (index, seed), drawn at image_size; the attributes ignore image_size."""
    check_image_size(image_size)
    rng = np.random.default_rng((int(seed), int(index)))
    objects = _sample_objects(rng)
    background = sample_background(rng)
    caption = caption_for(objects, variant=int(rng.integers(NUM_CAPTION_VARIANTS)))
    return ShapesSample(
        image=render_objects(objects, background, image_size),
        class_id=class_id_for(objects[0].color, objects[0].shape),
        caption=caption,
        objects=objects,
        background=background,
    )


class ShapesDataset(torch.utils.data.Dataset):
    """Samples offset .. offset+num_samples-1 of the stream for `seed`; disjoint offsets = disjoint splits."""

    def __init__(self, num_samples: int, image_size: int = 64, seed: int = 0, offset: int = 0):
        check_image_size(image_size)
        if num_samples < 0 or offset < 0:
            raise ValueError(f"num_samples and offset must be >= 0, got {num_samples!r} and {offset!r}")
        self.num_samples, self.image_size, self.seed, self.offset = num_samples, image_size, seed, offset

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, i: int) -> ShapesSample:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for ShapesDataset of {self.num_samples} samples")
        return render_sample(self.offset + i, seed=self.seed, image_size=self.image_size)

    def __getitem__(self, i: int) -> dict:
        sample = self.sample(i)
        image = torch.from_numpy(sample.image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        return {
            "image": image.contiguous(),
            "class_id": sample.class_id,
            "caption": sample.caption,
            "key": f"shapes-{self.seed}-{self.offset + i:08d}",
        }
