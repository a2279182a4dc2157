"""The audio-notes checker: clean renders score 100%, silence and white noise fail, and a render
with one attribute swapped fails that attribute (and only that one)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from unimodal.data.audio_notes import (TIMBRES, AudioNotesDataset, Note, NoteClip, render_clip,
                                       render_notes)
from unimodal.metrics.audio_checker import (AudioAccuracy, AudioSpec, detect_notes,
                                            estimated_direction, parse_caption, score_audio,
                                            score_reconstructions, spec_for_key, spec_from_clip)

SEED, OFFSET = 11, 50_000  # clips the data tests do not use


def _clips(n, seed=SEED):
    return [render_clip(OFFSET + i, seed=seed) for i in range(n)]


def _others_right(score, wrong):
    return all(getattr(score, key) for key in ("count", "direction", "timbre", "loudness") if key != wrong)


def test_clean_renders_score_100_percent():
    accuracy = AudioAccuracy()
    for clip in _clips(300):
        spec = spec_from_clip(clip.attributes)
        accuracy.update(score_audio(clip.waveform, spec), spec)
    result = accuracy.compute()
    assert result["clips"] == 300
    for key in AudioAccuracy.KEYS:
        assert result[key] == 1.0, (key, result)


def test_moderate_noise_floor_still_scores():
    """White noise 20 dB below the clip's mean power fills the gaps; the noise-floor threshold
    still splits the notes (a tokenizer's reconstructions will not be silent between notes)."""
    rng, accuracy = np.random.default_rng(1), AudioAccuracy()
    for clip in _clips(60, seed=4):
        wave = clip.waveform
        noisy = wave + rng.normal(0.0, np.sqrt((wave ** 2).mean() / 100), len(wave)).astype(np.float32)
        spec = spec_from_clip(clip.attributes)
        accuracy.update(score_audio(noisy, spec), spec)
    assert accuracy.compute()["prompt"] >= 0.95


def test_detected_notes_match_the_generating_attributes():
    for clip in _clips(40, seed=3):
        detected = detect_notes(clip.waveform)
        assert detected.count == clip.attributes.count
        for found, note in zip(detected.notes, clip.attributes.notes):
            assert found.frequency == pytest.approx(note.frequency, rel=0.005)
            assert found.start == pytest.approx(note.start, abs=0.015)
            assert found.stop <= note.start + note.duration + 0.015


def test_parse_caption_reads_every_caption():
    for clip in _clips(100):
        assert parse_caption(clip.caption) == replace(spec_from_clip(clip.attributes), midis=None)
    assert parse_caption("A Plucked String playing two falling notes, LOUD") == AudioSpec(
        2, "falling", "plucked", "loud")
    for bad in ("three notes, sine wave, loud", "one rising note, sine wave, loud",
                "two rising notes, loud", "a dog barks"):
        with pytest.raises(ValueError, match="caption"):
            parse_caption(bad)


def test_silence_scores_zero():
    accuracy = AudioAccuracy()
    for clip in _clips(40):
        spec = spec_from_clip(clip.attributes)
        score = score_audio(np.zeros_like(clip.waveform), spec)
        assert not (score.count or score.direction or score.timbre or score.loudness or any(score.pitch))
        accuracy.update(score, spec)
    assert accuracy.compute()["prompt"] == 0.0


@pytest.mark.parametrize("amplitude", [0.05, 0.25, 0.7])
def test_white_noise_fails_timbre_and_prompt(amplitude):
    rng = np.random.default_rng(0)
    for clip in _clips(20):
        noise = np.clip(rng.normal(0.0, amplitude, len(clip.waveform)), -1, 1).astype(np.float32)
        score = score_audio(noise, spec_from_clip(clip.attributes))
        assert not score.timbre and not score.correct
        assert score.detected.timbre == "noise"


def test_wrong_timbre_is_caught():
    for clip in _clips(24):
        spec = spec_from_clip(clip.attributes)
        for other in TIMBRES:
            if other == spec.timbre:
                continue
            score = score_audio(render_notes(replace(clip.attributes, timbre=other)), spec)
            assert not score.timbre and not score.correct, (clip.caption, other)
            assert score.detected.timbre == other and _others_right(score, "timbre")


def _with_pitches(clip: NoteClip, midis) -> NoteClip:
    return replace(clip, notes=tuple(replace(n, midi=m) for n, m in zip(clip.notes, midis)))


def test_wrong_direction_is_caught():
    checked = 0
    for clip in _clips(60):
        attributes = clip.attributes
        if attributes.direction not in ("rising", "falling"):
            continue
        midis = [n.midi for n in attributes.notes]
        spec = spec_from_clip(attributes)
        for wrong in (midis[::-1], [midis[0]] * len(midis)):  # the opposite way, and repeated
            score = score_audio(render_notes(_with_pitches(attributes, wrong)), spec)
            assert not score.direction and not score.correct and _others_right(score, "direction")
        checked += 1
    assert checked >= 20
    assert estimated_direction([60.0, 64.1, 61.9]) == "mixed"
    assert estimated_direction([72.0, 72.2]) == "repeated" and estimated_direction([]) == "unknown"


def test_wrong_count_is_caught():
    for clip in _clips(40):
        attributes = clip.attributes
        spec = spec_from_clip(attributes)
        if attributes.count > 2:
            fewer = replace(attributes, notes=attributes.notes[:-1])
        else:  # one more note of the same pitch after the last (the clip ends 50 ms later)
            last = attributes.notes[-1]
            extra = Note(last.midi, last.start + last.duration + 0.08, 0.15)
            fewer = replace(attributes, notes=attributes.notes + (extra,),
                            duration=extra.start + extra.duration + 0.05)
            if attributes.count == 2:  # keep the direction word true for three notes
                fewer = _with_pitches(fewer, [n.midi for n in attributes.notes] + [
                    attributes.notes[-1].midi + (attributes.notes[-1].midi - attributes.notes[0].midi)])
        score = score_audio(render_notes(fewer), spec)
        assert not score.count and not score.correct, clip.caption


def test_wrong_loudness_is_caught():
    for clip in _clips(40):
        attributes = clip.attributes
        swapped = replace(attributes, peak=0.8 if attributes.loudness == "quiet" else 0.25)
        score = score_audio(render_notes(swapped), spec_from_clip(attributes))
        assert not score.loudness and not score.correct and _others_right(score, "loudness")


def test_reconstructions_by_dataset_key_and_torch_input():
    dataset = AudioNotesDataset(12, seed=SEED, offset=OFFSET)  # padded to 2 s: trailing silence
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=12)))
    accuracy = AudioAccuracy()
    keys = list(batch["key"]) + ["shapes-0-00000001"]
    waves = torch.cat([batch["waveform"], torch.zeros(1, 1, 32_000)])
    assert score_reconstructions(accuracy, waves, keys) == 12
    assert accuracy.compute()["prompt"] == 1.0
    assert spec_for_key("notes-3-00000007") == spec_from_clip(render_clip(7, 3).attributes)
    assert spec_for_key("shapes-0-00000001") is None
    with pytest.raises(ValueError, match="mono"):
        detect_notes(np.zeros((2, 100)))
