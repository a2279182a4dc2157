"""Built-in procedural "moving shapes" clips: 1-2 shapes scenes objects, each moving in a direction.

The video analogue of `unimodal.data.shapes` (whose colours, shapes, backgrounds and drawing it
reuses); `unimodal.metrics.video_checker` scores clips against their captions. Design choices
(the checker relies on all of them):
- A clip is F frames (default 8, 2-16) of one shapes scene at any size 32-256 px; frames are
  (F, 3, H, W) float32 in [-1, 1], as `ShapesDataset` gives images.
- 1-2 objects with distinct colours (the checker tracks an object by its colour) over one
  unsaturated background, exactly as the still shapes scenes draw them.
- Each object moves in a straight line, "left", "right", "up" or "down" (y downwards), at a constant
  speed: "slow" = 1/64 or "fast" = 2/64 of the image side per frame (1 or 2 px per frame at 64 px).
  A fast object crosses at most 15 x 2/64 = 0.47 of the frame in 16 frames.
- Every object stays inside the frame (a 0.03 margin) in every frame, and the bounding boxes of two
  objects stay 0.05 apart along some axis in every frame: objects never touch, cross or leave.
- Captions: "<a colour shape> moves <direction>[ slowly|quickly]", joined by " and " for two
  objects, largest first: "a red circle moves left and a blue square moves up quickly". Half the
  clips name the speed (`MovingScene.speed_in_caption`); the others say nothing of it.
- A clip is a pure function of (index, seed, frames) via numpy.random.default_rng((seed, index));
  positions are image fractions, so the image size changes the pixels, never the scene. Colours,
  shapes, background and whether the caption names the speed do not depend on `frames` either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from unimodal.data.shapes import (COLORS, SHAPES, Background, ShapeObject, check_image_size,
                                  render_objects, sample_background, with_article)

FRAMES, MIN_FRAMES, MAX_FRAMES = 8, 2, 16
MAX_OBJECTS = 2
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
UNIT: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPEEDS: dict[str, float] = {"slow": 1 / 64, "fast": 2 / 64}  # image sides per frame
SPEED_WORDS: dict[str, str] = {"slow": "slowly", "fast": "quickly"}
EDGE_MARGIN = 0.03  # between a bounding box and the image border, in every frame
GAP = 0.05  # between two bounding boxes along some axis, in every frame

_COLOR_NAMES = tuple(COLORS)
# Per object count: the range of the half-extent; two objects must pass each other.
_SIZE_RANGE = {1: (0.12, 0.2), 2: (0.1, 0.14)}
_MAX_LAYOUT_TRIES = 500


@dataclass(frozen=True)
class MovingObject:
    start: ShapeObject  # colour, shape, size and the centre in frame 0
    direction: str      # one of DIRECTIONS
    speed: str          # one of SPEEDS

    @property
    def color(self) -> str:
        return self.start.color

    @property
    def shape(self) -> str:
        return self.start.shape

    @property
    def velocity(self) -> tuple[float, float]:
        """(dx, dy) in image sides per frame, y downwards."""
        ux, uy = UNIT[self.direction]
        return ux * SPEEDS[self.speed], uy * SPEEDS[self.speed]

    def at(self, frame: int) -> ShapeObject:
        vx, vy = self.velocity
        x, y = self.start.center
        return replace(self.start, center=(x + vx * frame, y + vy * frame))


@dataclass(frozen=True)
class MovingScene:
    """The generating attributes of one clip; `render_scene` turns them into frames."""
    objects: tuple[MovingObject, ...]  # largest first
    background: Background
    frames: int
    speed_in_caption: bool  # whether the caption names each object's speed


@dataclass(frozen=True)
class ClipSample:
    frames: torch.Tensor  # float32 (F, 3, H, W) in [-1, 1]
    caption: str
    attributes: MovingScene


def check_frames(frames: int) -> None:
    if not isinstance(frames, (int, np.integer)) or not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be an int in {MIN_FRAMES}..{MAX_FRAMES}, got {frames!r}")


def caption_for(objects, speed_in_caption: bool) -> str:
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"caption_for needs 1-{MAX_OBJECTS} objects, got {len(objects)}")
    clauses = []
    for obj in objects:
        clause = f"{with_article(obj.start)} moves {obj.direction}"
        clauses.append(f"{clause} {SPEED_WORDS[obj.speed]}" if speed_in_caption else clause)
    return " and ".join(clauses)


def caption_of(scene: MovingScene) -> str:
    return caption_for(scene.objects, scene.speed_in_caption)


# ------------------------------------------------------------------------------------------- layout
def _boxes_apart(a: MovingObject, b: MovingObject, frames: int) -> bool:
    """Whether the bounding boxes of a and b are GAP apart along x or y in every frame."""
    t = np.arange(frames)
    (ax, ay), (bx, by) = a.start.center, b.start.center
    (avx, avy), (bvx, bvy) = a.velocity, b.velocity
    reach = a.start.size + b.start.size + GAP
    dx = np.abs(ax - bx + (avx - bvx) * t)
    dy = np.abs(ay - by + (avy - bvy) * t)
    return bool(np.all((dx >= reach) | (dy >= reach)))


def _start_range(size: float, step: float, frames: int) -> tuple[float, float]:
    """The centres along one axis from which `frames` steps of `step` stay inside the margin."""
    low, high = size + EDGE_MARGIN, 1.0 - size - EDGE_MARGIN
    travel = step * (frames - 1)
    return (low, high - travel) if travel >= 0 else (low - travel, high)


def _place(rng: np.random.Generator, look: tuple[str, str], size: float, direction: str,
           speed: str, frames: int) -> MovingObject:
    ux, uy = UNIT[direction]
    center = [float(rng.uniform(*_start_range(size, u * SPEEDS[speed], frames))) for u in (ux, uy)]
    color, shape = look
    start = ShapeObject(shape=shape, color=color, center=(round(center[0], 4), round(center[1], 4)),
                        size=round(size, 4))
    return MovingObject(start, direction, speed)


def _sample_motions(rng: np.random.Generator, looks: list[tuple[str, str]],
                    frames: int) -> tuple[MovingObject, ...]:
    """Directions, speeds, sizes and start centres for `looks` (colour, shape) that keep every object
    in the frame and apart from the others in every frame."""
    count = len(looks)
    low, high = _SIZE_RANGE[count]
    for _ in range(_MAX_LAYOUT_TRIES):
        sizes = np.sort(rng.uniform(low, high, size=count))[::-1]
        directions = rng.integers(len(DIRECTIONS), size=count)
        speeds = rng.integers(len(SPEEDS), size=count)
        objects = tuple(_place(rng, looks[k], float(sizes[k]), DIRECTIONS[int(directions[k])],
                               tuple(SPEEDS)[int(speeds[k])], frames) for k in range(count))
        if all(_boxes_apart(objects[i], objects[j], frames)
               for i in range(count) for j in range(i + 1, count)):
            return objects
    # Never reached in practice (see the tests); always fits: smallest sizes, two rows, moving
    # slowly in opposite directions.
    return tuple(MovingObject(ShapeObject(shape, color, (0.5, (k + 0.5) / count), low),
                              ("left", "right")[k % 2], "slow")
                 for k, (color, shape) in enumerate(looks))


def sample_scene(index: int, seed: int = 0, frames: int = FRAMES) -> MovingScene:
    """The attributes of clip (index, seed, frames): no rendering, the same at every image size."""
    check_frames(frames)
    rng = np.random.default_rng((int(seed), int(index)))
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    colors = rng.choice(len(COLORS), size=count, replace=False)
    shapes = rng.integers(len(SHAPES), size=count)
    background = sample_background(rng)
    speed_in_caption = bool(rng.random() < 0.5)
    looks = [(_COLOR_NAMES[int(colors[k])], SHAPES[int(shapes[k])]) for k in range(count)]
    return MovingScene(_sample_motions(rng, looks, frames), background, int(frames), speed_in_caption)


# ---------------------------------------------------------------------------------------- rendering
def render_scene(scene: MovingScene, image_size: int = 64) -> np.ndarray:
    """uint8 (F, H, W, 3): each frame drawn by the shapes renderer."""
    check_image_size(image_size)
    return np.stack([render_objects([obj.at(f) for obj in scene.objects], scene.background, image_size)
                     for f in range(scene.frames)])


def to_model_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (F, 3, H, W) in [-1, 1], as ShapesDataset scales images."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def render_clip(index: int, seed: int = 0, frames: int = FRAMES, image_size: int = 64) -> ClipSample:
    """Clip (index, seed) with `frames` frames at `image_size` px."""
    scene = sample_scene(index, seed, frames)
    return ClipSample(to_model_frames(render_scene(scene, image_size)), caption_of(scene), scene)


class MovingShapesDataset(torch.utils.data.Dataset):
    """Clips offset .. offset+num_samples-1 of the stream for `seed`; disjoint offsets = disjoint splits."""

    def __init__(self, num_samples: int, frames: int = FRAMES, image_size: int = 64, seed: int = 0,
                 offset: int = 0):
        check_frames(frames)
        check_image_size(image_size)
        if num_samples < 0 or offset < 0:
            raise ValueError(f"num_samples and offset must be >= 0, got {num_samples!r} and {offset!r}")
        self.num_samples, self.frames, self.image_size = num_samples, frames, image_size
        self.seed, self.offset = seed, offset

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, i: int) -> ClipSample:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for MovingShapesDataset of {self.num_samples} samples")
        return render_clip(self.offset + i, seed=self.seed, frames=self.frames, image_size=self.image_size)

    def __getitem__(self, i: int) -> dict:
        sample = self.sample(i)
        return {
            "video": sample.frames,  # (F, 3, H, W)
            "caption": sample.caption,
            "key": f"moving-{self.seed}-{self.offset + i:08d}",
        }


class ChannelsFirstClips(torch.utils.data.Dataset):
    """Moving-shapes clips as the 3-D tokenizer takes them: "video" (F, 3, H, W) -> (3, F, H, W)."""

    def __init__(self, clips: MovingShapesDataset):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        return {**item, "video": item["video"].transpose(0, 1).contiguous()}
