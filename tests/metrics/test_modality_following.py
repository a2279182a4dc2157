"""Prompt following of audio and video samples (unimodal/metrics/modality_following.py): held-out
captions are those of built-in clips past every training split, clean renders of them score 100%,
and a sample that does not match its caption (another clip's) does not."""

import pytest
import torch

from unimodal.data.audio_notes import render_clip as render_notes
from unimodal.data.moving_shapes import render_clip as render_moving
from unimodal.metrics.modality_following import HELDOUT_START, heldout_captions, score_samples


def test_clean_audio_renders_of_heldout_captions_score_100_percent():
    captions = heldout_captions("audio", 6, seed=2)
    clips = [render_notes(HELDOUT_START + i, 2) for i in range(6)]
    assert captions == [c.caption for c in clips]
    waves = torch.zeros(6, 1, 32000)   # 2 s clips, zero padded as the tokenizer's clips are
    for i, clip in enumerate(clips):
        waves[i, 0, :len(clip.waveform)] = torch.from_numpy(clip.waveform)
    assert score_samples("audio", waves, captions)["prompt"] == 1.0
    assert score_samples("audio", torch.zeros(6, 1, 32000), captions)["prompt"] == 0.0


def test_clean_video_renders_score_100_percent_and_swapped_captions_do_not():
    captions = heldout_captions("video", 4, seed=1, frames=8)
    clips = torch.stack([render_moving(HELDOUT_START + i, 1, 8, 64).frames for i in range(4)])
    channels_first = clips.transpose(1, 2)           # (N, 3, F, H, W), as the tokenizer decodes
    assert score_samples("video", channels_first, captions)["prompt"] == 1.0
    swapped = captions[1:] + captions[:1]
    assert score_samples("video", channels_first, swapped)["prompt"] < 1.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="the checkers score"):
        heldout_captions("image", 2)
    with pytest.raises(ValueError, match="2 samples but 1 captions"):
        score_samples("audio", torch.zeros(2, 1, 100), ["one note, sine wave, loud"])
