"""Prompt following on the built-in moving shapes (`unimodal.data.moving_shapes`) without any weights.

A checker finds the objects in every frame with the shapes checker, follows each colour over the
frames, and scores the clip against what a caption asks for: colour, shape, direction, speed (when
the caption names it), object count, and the whole prompt.

Design choices, one line each:
- Per frame: `shapes_checker.detect_objects` (colour, shape, centre of every saturated object).
- Tracks by colour: colours within a clip are distinct, so an object is the largest detection of
  its colour in each frame; its track is that detection's coverage centroid per frame (None where
  missing): the centroid, unlike the fitted box centre, does not jump when the shape call does.
- Colour: the asked-for colour is found in every frame (an object that vanishes has failed).
- Shape: the majority vote of the track's per-frame shapes (ties go to the first frame's).
- Velocity: the least-squares slope of the track's centre over the frame index, in image sides per
  frame; the direction is the slope's dominant axis and sign.
- Still: a slope under 0.25/64 per frame (a quarter of the slow speed) is "still"; a track whose
  frame-to-frame steps go the estimated way less than 75% of the time is "erratic". Neither is a
  direction, so a static, shuffled or blank clip fails direction; a reversed clip reads opposite.
- Speed: the dominant-axis slope against 1.5/64 per frame (the data's slow 1/64, fast 2/64).
- Count: every frame holds exactly the asked-for number of objects.
- Prompts come from the generating attributes (`spec_from_scene`) or from text (`parse_caption`),
  which reads every caption `moving_shapes.caption_for` writes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from unimodal.data.moving_shapes import (DIRECTIONS, MAX_OBJECTS, SPEED_WORDS, SPEEDS, UNIT,
                                         MovingScene, sample_scene)
from unimodal.data.shapes import COLORS, SHAPES
from unimodal.metrics.hit_counts import HitCounts, builtin_spec
from unimodal.metrics.shapes_checker import DetectedObject, detect_objects

STILL_SPEED = SPEEDS["slow"] / 4  # image sides per frame: 0.25/64
FAST_SPEED = (SPEEDS["slow"] + SPEEDS["fast"]) / 2  # 1.5/64, midway between the two speeds
STEADY_FRACTION = 0.75   # of the frame-to-frame steps that go the estimated way


# ---------------------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class ObjectTrack:
    color: str
    shape: str                                       # majority vote over the frames it is found in
    centers: tuple[tuple[float, float] | None, ...]  # centroids per frame; None where missing
    velocity: tuple[float, float]                    # image sides per frame, y downwards
    direction: str                                   # one of DIRECTIONS, "still" or "erratic"
    speed: str | None                                # one of SPEEDS; None unless a direction is found

    @property
    def frames_found(self) -> int:
        return sum(c is not None for c in self.centers)


@dataclass(frozen=True)
class DetectedClip:
    frames: tuple[tuple[DetectedObject, ...], ...]  # per frame, largest first
    tracks: dict[str, ObjectTrack]                  # by colour

    @property
    def counts(self) -> list[int]:
        return [len(objects) for objects in self.frames]


def estimate_motion(centers: Sequence[tuple[float, float] | None]
                    ) -> tuple[tuple[float, float], str, str | None]:
    """(velocity, direction, speed) of a centre track; frames without a centre are left out."""
    found = [(t, c) for t, c in enumerate(centers) if c is not None]
    if len(found) < 2:
        return (0.0, 0.0), "still", None
    t = np.array([f for f, _ in found], dtype=np.float64)
    xy = np.array([c for _, c in found], dtype=np.float64)
    t_centered = t - t.mean()
    velocity = (t_centered @ (xy - xy.mean(0))) / (t_centered @ t_centered)
    axis = int(np.argmax(np.abs(velocity)))
    along = float(velocity[axis])
    if abs(along) < STILL_SPEED:
        return (float(velocity[0]), float(velocity[1])), "still", None
    direction = next(d for d in DIRECTIONS if UNIT[d][axis] == np.sign(along))
    steps = np.diff(xy[:, axis]) * np.sign(along)
    if np.mean(steps > 0) < STEADY_FRACTION:
        direction = "erratic"
    speed = None if direction == "erratic" else ("fast" if abs(along) >= FAST_SPEED else "slow")
    return (float(velocity[0]), float(velocity[1])), direction, speed


def _track(color: str, per_frame: list[DetectedObject | None]) -> ObjectTrack:
    shapes = [o.shape for o in per_frame if o is not None]
    votes = Counter(shapes)
    shape = max(votes, key=lambda s: (votes[s], -shapes.index(s)))
    centers = tuple(None if o is None else o.centroid for o in per_frame)
    velocity, direction, speed = estimate_motion(centers)
    return ObjectTrack(color, shape, centers, velocity, direction, speed)


def _frames_list(frames) -> list:
    """(F, 3, H, W) tensor in [-1, 1] or uint8 (F, H, W, 3) -> a list of what detect_objects takes."""
    if hasattr(frames, "detach"):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected a clip tensor (F, 3, H, W), got {tuple(frames.shape)}")
        return list(frames)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected a uint8 clip (F, H, W, 3), got {frames.shape}")
    return list(frames)


def detect_clip(frames) -> DetectedClip:
    """Objects per frame and one track per colour seen in any frame."""
    per_frame = tuple(tuple(detect_objects(frame)) for frame in _frames_list(frames))
    if len(per_frame) < 2:
        raise ValueError(f"a clip needs at least 2 frames to show motion, got {len(per_frame)}")
    colors = {o.color for objects in per_frame for o in objects}
    tracks = {}
    for color in sorted(colors):
        # Largest first in each frame: keep the largest detection of this colour.
        largest = [next((o for o in objects if o.color == color), None) for objects in per_frame]
        tracks[color] = _track(color, largest)
    return DetectedClip(per_frame, tracks)


# ------------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class AskedObject:
    color: str
    shape: str
    direction: str
    speed: str | None  # None when the prompt does not name the speed


@dataclass(frozen=True)
class VideoSpec:
    objects: tuple[AskedObject, ...]


def spec_from_scene(scene: MovingScene) -> VideoSpec:
    """What a moving-shapes caption asks for, from the generating attributes (no text parsing)."""
    return VideoSpec(tuple(AskedObject(o.color, o.shape, o.direction,
                                       o.speed if scene.speed_in_caption else None)
                           for o in scene.objects))


_WORD_SPEED = {word: speed for speed, word in SPEED_WORDS.items()}
_CLAUSE = re.compile(
    r"\b(?:an?|the)\s+(?P<color>" + "|".join(COLORS) + r")\s+(?P<shape>" + "|".join(SHAPES)
    + r")\s+moves\s+(?P<direction>" + "|".join(DIRECTIONS) + r")\b(?:\s+(?P<speed>"
    + "|".join(_WORD_SPEED) + r")\b)?")


def parse_caption(text: str) -> VideoSpec:
    """Objects, directions and speeds of a caption like "a red circle moves left quickly and ..."."""
    objects = tuple(AskedObject(m["color"], m["shape"], m["direction"], _WORD_SPEED.get(m["speed"]))
                    for m in _CLAUSE.finditer(text.lower()))
    if not objects:
        raise ValueError(f"caption {text!r}: no '<a colour shape> moves <direction>' (colours "
                         f"{list(COLORS)}, shapes {list(SHAPES)}, directions {list(DIRECTIONS)})")
    return VideoSpec(objects)


# ------------------------------------------------------------------------------------------ scoring
@dataclass
class VideoScore:
    color: list[bool]      # per asked-for object: its colour is found in every frame
    shape: list[bool]      # per asked-for object (its colour must be found first)
    direction: list[bool]  # per asked-for object (its colour must be found first)
    speed: list[bool]      # per object whose speed the prompt names (direction must be right)
    count: bool            # every frame holds exactly the asked-for number of objects
    detected: DetectedClip | None = field(default=None, repr=False)

    @property
    def correct(self) -> bool:
        return (all(self.color) and all(self.shape) and all(self.direction) and all(self.speed)
                and self.count)


def score_detected(detected: DetectedClip, spec: VideoSpec) -> VideoScore:
    num_frames = len(detected.frames)
    color, shape, direction, speed = [], [], [], []
    for asked in spec.objects:
        track = detected.tracks.get(asked.color)
        found = track is not None and track.frames_found == num_frames
        color.append(found)
        shape.append(found and track.shape == asked.shape)
        direction.append(found and track.direction == asked.direction)
        if asked.speed is not None:
            speed.append(direction[-1] and track.speed == asked.speed)
    count = all(n == len(spec.objects) for n in detected.counts)
    return VideoScore(color, shape, direction, speed, count, detected)


def score_clip(frames, spec: VideoSpec) -> VideoScore:
    return score_detected(detect_clip(frames), spec)


class VideoAccuracy(HitCounts):
    """Running accuracies: per attribute (pooled over objects), whole prompt, whole prompt by object
    count, and direction by the asked-for direction."""

    KEYS = (("prompt", "color", "shape", "direction", "speed", "count")
            + tuple(f"prompt_{n}_objects" for n in range(1, MAX_OBJECTS + 1))
            + tuple(f"direction_{d}" for d in DIRECTIONS))

    TOTAL_KEY = "clips"

    def update(self, score: VideoScore, spec: VideoSpec) -> None:
        for key in ("color", "shape", "direction", "speed"):
            self._add(key, getattr(score, key))
        self._add("count", [score.count])
        self._add("prompt", [score.correct])
        self._add(f"prompt_{len(spec.objects)}_objects", [score.correct])
        for asked, hit in zip(spec.objects, score.direction):
            self._add(f"direction_{asked.direction}", [hit])


# ------------------------------------------------------------------------- tokenizer reconstructions
def spec_for_key(key: str, frames: int) -> VideoSpec | None:
    """What the caption of a built-in moving-shapes clip of `frames` frames asks for, from its
    dataset key ('moving-<seed>-<index>', see `MovingShapesDataset`); None for other sources."""
    return builtin_spec(key, "moving",
                        lambda seed, index: spec_from_scene(sample_scene(index, seed, frames)))


def score_reconstructions(accuracy: VideoAccuracy, clips, keys: Sequence[str]) -> int:
    """Check reconstructed clips against the captions of their originals.

    clips: (B, F, 3, H, W) in [-1, 1]; keys: their dataset keys. Returns how many were scored (keys
    of other sources are skipped). A perfect reconstruction scores 100%.
    """
    return accuracy.update_by_key(clips, keys, lambda key, clip: spec_for_key(key, len(clip)),
                                  score_clip)
