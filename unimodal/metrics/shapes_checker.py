"""Prompt following on the built-in shapes data without any pretrained weights (an offline GenEval).

A checker finds the objects in an image (colour, shape, position) and scores them against the
attributes a prompt asks for: per attribute (colour, shape, position, count) and whole prompt.

Design choices, one line each:
- Objects are saturated and backgrounds are not (see `unimodal.data.shapes`): a pixel belongs to an
  object when its chroma max(RGB) - min(RGB) >= 0.3 (objects >= 0.6, backgrounds <= 0.19).
- Connected components (scipy.ndimage, 4-connectivity) smaller than 0.5% of the image are noise;
  the smallest real object covers about 2.9%.
- Colour: the nearest palette hue (circular distance) to the median hue of the component's core.
- Coverage (alpha) per pixel is linear in chroma between the local background (a ring around the
  component) and the object's own chroma; it undoes anti-aliasing.
- Shape: template matching. For each of the 4 shapes, the size that gives the measured area and
  the centre that gives the measured centroid define an anti-aliased template; the shape whose
  template differs least (L1 over coverage) wins. Rotation-free shapes make this exact.
- Position: the bounding-box centre of the winning template; relations use the captions' rule
  (dominant axis of the centre offset, y downwards). A lone object's placement gets a tolerance
  of 0.03 image widths at the 0.1 "in the center" radius, which captions draw with no margin.
- Matching prompt to image by colour: colours within one image are distinct, so each asked-for
  object is the largest detected object of its colour; no such object fails colour, shape and
  every relation it is in.
- Class prompts (class id = colour x shape of the largest object) ask for one object of that
  colour and shape and say nothing of the others or the count.
- Prompts come from the generating attributes (`spec_from_objects`) or from text
  (`parse_prompt`), which reads every caption `caption_for` writes (and like sentences).
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from unimodal.data.shapes import (COLORS, SHAPES, ShapeObject, class_name, position_in_image,
                                  relation, render_sample)
from unimodal.metrics.hit_counts import HitCounts, builtin_spec

OBJECT_CHROMA = 0.3
MIN_AREA_FRACTION = 0.005
PLACEMENT_TOLERANCE = 0.03
CENTER_RADIUS = 0.1  # the captions' "in the center" radius (unimodal.data.shapes)
RELATIONS = ("to the left of", "to the right of", "above", "below")
INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of",
           "above": "below", "below": "above"}
PLACEMENTS = ("in the center", "on the left", "on the right", "at the top", "at the bottom")
PALETTE_HUES = {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for name, rgb in COLORS.items()}
# Template geometry in units of the half-extent r: area, and centroid below the box centre.
_AREA = {"circle": np.pi, "square": 4.0, "triangle": 2.0, "diamond": 2.0}
_CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 1 / 3, "diamond": 0.0}


# ---------------------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class DetectedObject:
    color: str
    shape: str
    center: tuple[float, float]  # (x, y) as fractions of the image side, y downwards
    size: float                  # half-extent of the fitted template, fraction of the image side
    area: float                  # coverage area, fraction of the image
    shape_error: float           # L1 template error / area of the winning shape

    @property
    def centroid(self) -> tuple[float, float]:
        """The coverage centroid (the fit matches it), whatever shape won: a track of centroids
        does not jump when a triangle's box centre, r/3 above its centroid, wins in some frames."""
        return self.center[0], self.center[1] + _CENTROID_DROP[self.shape] * self.size


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points (u, v) in units of r around the box centre, y downwards (as the renderer draws)."""
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "square":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    return (v <= 1) & (np.abs(u) <= (v + 1) / 2)  # triangle: apex (0, -1), base on v = 1


def _template(shape: str, cx: float, cy: float, r: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Coverage of the pixels (ys, xs) by `shape`, supersampled (4x4 for small objects)."""
    ss = 4 if r < 16 else 2
    offsets = (np.arange(ss) + 0.5) / ss
    py = ys[:, None, None] + offsets[None, :, None]
    px = xs[:, None, None] + offsets[None, None, :]
    return _inside(shape, (px - cx) / r, (py - cy) / r).mean((1, 2))


def _hue_name(hues: np.ndarray) -> str:
    angle = np.angle(np.exp(2j * np.pi * hues).mean()) / (2 * np.pi) % 1.0  # circular mean
    def distance(h: float) -> float:
        return min(abs(angle - h), 1 - abs(angle - h))
    return min(PALETTE_HUES, key=lambda name: distance(PALETTE_HUES[name]))


def detect_objects(image) -> list[DetectedObject]:
    """Objects in an RGB image (uint8 H x W x 3, or a (3, H, W) tensor in [-1, 1]), largest first."""
    rgb = _as_unit_rgb(image)
    height, width = rgb.shape[:2]
    chroma = rgb.max(-1) - rgb.min(-1)
    coarse = chroma >= OBJECT_CHROMA
    labels, _ = ndimage.label(coarse)
    found = []
    for k, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        # Work in a window around the component (a ring of 4 px for the background estimate).
        y0, y1 = max(box[0].start - 5, 0), min(box[0].stop + 5, height)
        x0, x1 = max(box[1].start - 5, 0), min(box[1].stop + 5, width)
        comp = labels[y0:y1, x0:x1] == k
        if comp.sum() < MIN_AREA_FRACTION * height * width:
            continue
        c = chroma[y0:y1, x0:x1]
        near = ndimage.binary_dilation(comp, iterations=2)
        ring = ndimage.binary_dilation(comp, iterations=4) & ~near & ~coarse[y0:y1, x0:x1]
        c_bg = float(np.median(c[ring])) if ring.any() else 0.0
        c_obj = float(np.percentile(c[comp], 90))
        alpha = np.clip((c - c_bg) / max(c_obj - c_bg, 1e-3), 0.0, 1.0) * near
        ys, xs = np.nonzero(near)
        a = alpha[ys, xs]
        area = float(a.sum())
        if area <= 0:
            continue
        my, mx = float((a * (ys + 0.5)).sum() / area), float((a * (xs + 0.5)).sum() / area)
        fits = {}
        for shape in SHAPES:
            r = float(np.sqrt(area / _AREA[shape]))
            cy = my - _CENTROID_DROP[shape] * r
            error = float(np.abs(_template(shape, mx, cy, r, ys, xs) - a).sum() / area)
            fits[shape] = (error, mx, cy, r)
        shape = min(fits, key=lambda s: fits[s][0])
        error, cx, cy, r = fits[shape]
        core = comp & (alpha >= 0.5)
        hsv_hue = _hues(rgb[y0:y1, x0:x1][core if core.any() else comp])
        found.append(DetectedObject(
            color=_hue_name(hsv_hue), shape=shape,
            center=((x0 + cx) / width, (y0 + cy) / height), size=r / width,
            area=area / (height * width), shape_error=error))
    return sorted(found, key=lambda o: -o.area)


def _as_unit_rgb(image) -> np.ndarray:
    if hasattr(image, "detach"):  # a (3, H, W) tensor in [-1, 1]
        arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        return np.round(arr * 255) / 255
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image H x W x 3, got shape {arr.shape}")
    return arr.astype(np.float32) / 255.0


def _hues(pixels: np.ndarray) -> np.ndarray:
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    mx, mn = pixels.max(-1), pixels.min(-1)
    delta = np.maximum(mx - mn, 1e-6)
    hue = np.where(mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2,
                                                           (r - g) / delta + 4))
    return hue / 6.0


# ------------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class PromptSpec:
    objects: tuple[tuple[str, str], ...]           # (colour, shape); objects[0] is the subject
    relations: tuple[tuple[int, str, int], ...] = ()  # (i, relation, j), i < j: object i <rel> object j
    placement: str | None = None                   # a lone object's place in the frame
    exact_count: bool = True                       # the image must hold exactly these objects


def _normalised(relations) -> tuple[tuple[int, str, int], ...]:
    out = {(i, rel, j) if i < j else (j, INVERSE[rel], i) for i, rel, j in relations}
    return tuple(sorted(out))


def spec_from_objects(objects: Sequence[ShapeObject]) -> PromptSpec:
    """What a shapes caption asks for, from the generating attributes (no text parsing)."""
    rels = [(0, relation(objects[0], other), k) for k, other in enumerate(objects[1:], 1)]
    placement = position_in_image(objects[0]) if len(objects) == 1 else None
    return PromptSpec(tuple((o.color, o.shape) for o in objects), _normalised(rels), placement)


def spec_for_class(class_id: int) -> PromptSpec:
    color, shape = class_name(class_id).split()
    return PromptSpec(((color, shape),), exact_count=False)


_TOKEN = re.compile(
    r"(?P<object>\b(?:(?:a|an|the)\s+)?(?P<color>" + "|".join(COLORS) + r")\s+(?P<shape>"
    + "|".join(SHAPES) + r")s?\b)"
    r"|(?P<relation>\b(?:" + "|".join(RELATIONS) + r")\b)"
    r"|(?P<placement>\b(?:" + "|".join(PLACEMENTS) + r")\b)"
    r"|(?P<conjunction>\band\b)")


def parse_prompt(text: str) -> PromptSpec:
    """Objects, relations and placement of a shapes-style prompt.

    "A rel B and rel C": both relations have A as subject; "A rel B, and C rel the A": C is the
    subject of the second; a mention of an object already named ("the red circle") is that object.
    """
    objects: list[tuple[str, str]] = []
    relations: list[tuple[int, str, int]] = []
    placement = None
    last_obj = last_subject = None
    pending = None  # (subject, relation) waiting for its object
    previous = None
    for m in _TOKEN.finditer(text.lower()):
        kind = m.lastgroup  # the outermost group of the alternative that matched
        if kind == "object":
            key = (m.group("color"), m.group("shape"))
            if key not in objects:
                objects.append(key)
            idx = objects.index(key)
            if pending is not None:
                relations.append((pending[0], pending[1], idx))
                last_subject, pending = pending[0], None
            last_obj = idx
        elif kind == "relation":
            after_and = previous == "conjunction" and last_subject is not None
            subject = last_subject if after_and else last_obj
            if subject is None:
                raise ValueError(f"prompt {text!r}: relation {m.group(0)!r} before any object")
            pending = (subject, m.group(0))
        elif kind == "placement":
            placement = m.group(0)
        previous = kind
    if not objects:
        raise ValueError(f"prompt {text!r}: no '<colour> <shape>' (colours {list(COLORS)}, "
                         f"shapes {list(SHAPES)})")
    if pending is not None:
        raise ValueError(f"prompt {text!r}: relation {pending[1]!r} has no object after it")
    return PromptSpec(tuple(objects), _normalised(relations),
                      placement if len(objects) == 1 else None)


# ------------------------------------------------------------------------------------------ scoring
def relation_holds(a: tuple[float, float], b: tuple[float, float], word: str) -> bool:
    dx, dy = a[0] - b[0], a[1] - b[1]
    horizontal = abs(dx) >= abs(dy)
    return {"to the left of": horizontal and dx < 0, "to the right of": horizontal and dx > 0,
            "above": not horizontal and dy < 0, "below": not horizontal and dy > 0}[word]


def placement_holds(center: tuple[float, float], word: str,
                    tolerance: float = PLACEMENT_TOLERANCE) -> bool:
    dx, dy = center[0] - 0.5, center[1] - 0.5
    offset = max(abs(dx), abs(dy))
    if word == "in the center":
        return offset < CENTER_RADIUS + tolerance
    if offset < CENTER_RADIUS - tolerance:
        return False
    horizontal = abs(dx) >= abs(dy)
    return {"on the left": horizontal and dx < 0, "on the right": horizontal and dx > 0,
            "at the top": not horizontal and dy < 0, "at the bottom": not horizontal and dy > 0}[word]


@dataclass
class PromptScore:
    color: list[bool]                 # per asked-for object
    shape: list[bool]                 # per asked-for object (its colour must be found first)
    position: list[bool]              # per relation, or the lone object's placement
    count: bool | None                # None when the prompt does not fix the count
    detected: list[DetectedObject] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return all(self.color) and all(self.shape) and all(self.position) and self.count is not False


def score_detections(detected: list[DetectedObject], spec: PromptSpec) -> PromptScore:
    by_color: dict[str, DetectedObject] = {}
    for obj in detected:  # largest first: keep the largest object of each colour
        by_color.setdefault(obj.color, obj)
    matched = [by_color.get(color) for color, _ in spec.objects]
    color_ok = [m is not None for m in matched]
    shape_ok = [m is not None and m.shape == shape for m, (_, shape) in zip(matched, spec.objects)]
    position = [matched[i] is not None and matched[j] is not None
                and relation_holds(matched[i].center, matched[j].center, word)
                for i, word, j in spec.relations]
    if spec.placement is not None:
        position.append(matched[0] is not None and placement_holds(matched[0].center, spec.placement))
    count = len(detected) == len(spec.objects) if spec.exact_count else None
    return PromptScore(color_ok, shape_ok, position, count, detected)


def score_image(image, spec: PromptSpec) -> PromptScore:
    return score_detections(detect_objects(image), spec)


class ShapesAccuracy(HitCounts):
    """Running accuracies: per attribute (pooled over objects/relations) and whole prompt, also
    by the number of objects asked for."""

    KEYS = ("prompt", "color", "shape", "position", "count",
            "prompt_1_objects", "prompt_2_objects", "prompt_3_objects")

    def update(self, score: PromptScore, spec: PromptSpec) -> None:
        self._add("color", score.color)
        self._add("shape", score.shape)
        self._add("position", score.position)
        if score.count is not None:
            self._add("count", [score.count])
        self._add("prompt", [score.correct])
        self._add(f"prompt_{len(spec.objects)}_objects", [score.correct])


# ------------------------------------------------------------------------- tokenizer reconstructions
def spec_for_key(key: str) -> PromptSpec | None:
    """What the caption of a built-in shapes sample asks for, from its dataset key
    ('shapes-<seed>-<index>', see `ShapesDataset`); None for any other source's key."""
    # The scene does not depend on the render size: the smallest render gives the attributes.
    return builtin_spec(key, "shapes", lambda seed, index: spec_from_objects(
        render_sample(index, seed=seed, image_size=32).objects))


def score_reconstructions(accuracy: ShapesAccuracy, images, keys: Sequence[str]) -> int:
    """Check reconstructed shapes scenes against the captions of their originals.

    images: (B, 3, H, W) in [-1, 1]; keys: their dataset keys. Returns how many were scored
    (keys that are not shapes samples are skipped). A perfect reconstruction scores 100%.
    """
    return accuracy.update_by_key(images, keys, lambda key, image: spec_for_key(key), score_image)
