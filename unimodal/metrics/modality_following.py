"""Prompt following of sampled audio and video: held-out captions of the built-in sets in, the
checkers' accuracies out (eval/modality_score.py).

Design choices, one line each:
- Captions come from clips of the built-in sets that no training split reaches (indices from
  HELDOUT_START on, seed `seed`): the notes' `sample_attributes`, the moving shapes' `sample_scene`
  (no rendering needed for a caption).
- The spec a sample is scored against is parsed from its caption (`parse_caption`), so a caption
  that the checker cannot read fails loudly instead of scoring nothing.
- Audio is scored at the tokenizer's sample rate; video clips come channels first from the
  tokenizer, (3, F, H, W), and are scored frame by frame as (F, 3, H, W).
"""

from __future__ import annotations

import torch

from unimodal.data.audio_notes import caption_of as note_caption
from unimodal.data.audio_notes import sample_attributes
from unimodal.data.moving_shapes import caption_of as scene_caption
from unimodal.data.moving_shapes import sample_scene
from unimodal.metrics import audio_checker, video_checker

HELDOUT_START = 10_000_000  # far past any training split (num_samples of the configs: <= 200000)
KINDS = ("audio", "video")


def heldout_captions(kind: str, count: int, seed: int = 0, frames: int = 8) -> list[str]:
    """`count` captions of held-out built-in clips: audio notes, or moving shapes of `frames`."""
    if kind == "audio":
        return [note_caption(sample_attributes(HELDOUT_START + i, seed)) for i in range(count)]
    if kind == "video":
        return [scene_caption(sample_scene(HELDOUT_START + i, seed, frames)) for i in range(count)]
    raise ValueError(f"kind={kind!r}: the checkers score {KINDS}")


def score_samples(kind: str, samples: torch.Tensor, captions: list[str],
                  sample_rate: int = 16000) -> dict:
    """The checker's accuracies (AudioAccuracy / VideoAccuracy.compute()) of decoded samples:
    audio (N, 1, samples), video (N, 3, F, H, W), both in [-1, 1]; one caption per sample."""
    if len(samples) != len(captions):
        raise ValueError(f"{len(samples)} samples but {len(captions)} captions")
    if kind == "audio":
        accuracy = audio_checker.AudioAccuracy()
        for wave, caption in zip(samples, captions):
            spec = audio_checker.parse_caption(caption)
            accuracy.update(audio_checker.score_audio(wave, spec, sample_rate), spec)
    elif kind == "video":
        accuracy = video_checker.VideoAccuracy()
        for clip, caption in zip(samples, captions):
            spec = video_checker.parse_caption(caption)
            accuracy.update(video_checker.score_clip(clip.transpose(0, 1), spec), spec)
    else:
        raise ValueError(f"kind={kind!r}: the checkers score {KINDS}")
    return accuracy.compute()
