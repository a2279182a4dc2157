"""Tests for the procedural audio notes: determinism, waveform range, captions against attributes,
coverage of every attribute value, silent gaps and the dataset API."""

import re

import numpy as np
import pytest
import torch

from unimodal.data.audio_notes import (COUNT_WORDS, DIRECTIONS, LOUDNESS, PEAK_RANGE, SCALE_MIDI,
                                       TIMBRE_WORDS, TIMBRES, AudioNotesDataset, caption_for,
                                       direction_of, render_clip, render_tone, sample_attributes)

N = 300  # clips per property check; ~0.7 s at 16 kHz


def clips(seed=0, n=N, sample_rate=16_000):
    return [render_clip(i, seed=seed, sample_rate=sample_rate) for i in range(n)]


def test_determinism_and_seed_dependence():
    for i in range(20):
        a, b = render_clip(i, seed=3), render_clip(i, seed=3)
        assert a.waveform.tobytes() == b.waveform.tobytes()
        assert (a.caption, a.attributes) == (b.caption, b.attributes)
    differ_seed = sum(render_clip(i, 3).attributes != render_clip(i, 4).attributes for i in range(20))
    differ_index = sum(render_clip(i, 3).attributes != render_clip(i + 1, 3).attributes for i in range(20))
    assert differ_seed == 20 and differ_index == 20


def test_waveform_shape_dtype_range_and_peak():
    for s in clips(n=100):
        clip = s.attributes
        assert s.waveform.dtype == np.float32 and s.waveform.ndim == 1 and s.sample_rate == 16_000
        assert 1.0 <= clip.duration <= 2.0
        assert len(s.waveform) == round(clip.duration * 16_000)
        assert np.isfinite(s.waveform).all() and np.abs(s.waveform).max() <= 1.0
        assert np.abs(s.waveform).max() == pytest.approx(clip.peak, rel=1e-5)
        low, high = PEAK_RANGE[clip.loudness]
        assert low <= clip.peak <= high


def test_same_clip_at_every_sample_rate():
    for i in range(10):
        low, mid, high = (render_clip(i, seed=2, sample_rate=r) for r in (8_000, 16_000, 48_000))
        assert low.attributes == mid.attributes == high.attributes
        assert low.caption == mid.caption == high.caption
        assert len(high.waveform) == round(high.attributes.duration * 48_000)
    for bad in (4_000, 96_000, 16_000.0):
        with pytest.raises(ValueError, match="sample_rate"):
            render_clip(0, sample_rate=bad)


def expected_caption(clip):
    """Independent restatement of the caption template."""
    words = ["one", "two", "three", "four"][clip.count - 1]
    notes = "one note" if clip.count == 1 else f"{words} {clip.direction} notes"
    timbre = {"sine": "sine wave", "square": "square wave", "saw": "sawtooth wave",
              "plucked": "plucked string"}[clip.timbre]
    return f"{notes}, {timbre}, {clip.loudness}"


def test_caption_matches_attributes():
    for s in clips():
        clip = s.attributes
        assert s.caption == expected_caption(clip)
        midis = [n.midi for n in clip.notes]
        assert all(m in SCALE_MIDI for m in midis)
        if clip.count == 1:
            assert clip.direction is None
        else:
            steps = np.diff(midis)
            assert {"rising": (steps > 0).all(), "falling": (steps < 0).all(),
                    "repeated": (steps == 0).all()}[clip.direction]
            assert direction_of(midis) == clip.direction
    assert direction_of([60, 64, 62]) == "mixed" and direction_of([60]) is None
    with pytest.raises(ValueError):
        caption_for(1, "rising", "sine", "loud")
    with pytest.raises(ValueError):
        caption_for(5, "rising", "sine", "loud")


def test_every_attribute_value_appears():
    attributes = [sample_attributes(i) for i in range(N)]
    assert {c.timbre for c in attributes} == set(TIMBRES)
    assert {c.count for c in attributes} == set(range(1, len(COUNT_WORDS) + 1))
    assert {c.direction for c in attributes} == set(DIRECTIONS) | {None}
    assert {c.loudness for c in attributes} == set(LOUDNESS)
    assert {n.midi for c in attributes for n in c.notes} == set(SCALE_MIDI)
    # Every (count, direction) pair for 2-4 notes, and every timbre at both loudnesses.
    assert {(c.count, c.direction) for c in attributes if c.count > 1} == {
        (n, d) for n in (2, 3, 4) for d in DIRECTIONS}
    assert {(c.timbre, c.loudness) for c in attributes} == {(t, lo) for t in TIMBRES for lo in LOUDNESS}
    words = {w for c in attributes for w in re.findall(r"[a-z]+", expected_caption(c))}
    assert set(" ".join(TIMBRE_WORDS.values()).split()) <= words


def test_notes_are_separated_by_silence_and_start_without_clicks():
    for s in clips(n=100):
        wave, clip = s.waveform, s.attributes
        notes = clip.notes
        assert notes[0].start >= 0.05 - 1e-4 and notes[-1].start + notes[-1].duration <= clip.duration
        for a, b in zip(notes, notes[1:]):
            gap_start, gap_stop = a.start + a.duration, b.start
            assert gap_stop - gap_start >= 0.06 - 1e-3
            assert np.all(wave[int(gap_start * 16_000) + 2:int(gap_stop * 16_000) - 2] == 0)
        for note in notes:  # the first and last samples of a note are near zero (fades)
            start = int(round(note.start * 16_000))
            stop = start + int(round(note.duration * 16_000))
            assert np.abs(wave[start:start + 2]).max() < 0.05 * clip.peak
            assert np.abs(wave[stop - 2:stop]).max() < 0.05 * clip.peak


def test_timbres_differ_as_designed():
    """Sine is one partial, square has no even harmonics, saw has them, plucked decays."""
    rate, f0, n = 16_000, 250.0, 16_000  # 250 Hz over 1 s: harmonics land on exact FFT bins
    spectra = {t: np.abs(np.fft.rfft(render_tone(t, f0, n, rate))) for t in TIMBRES}
    bins = {k: int(k * f0) for k in (1, 2, 3)}
    assert spectra["sine"][bins[3]] < 1e-3 * spectra["sine"][bins[1]]
    assert spectra["square"][bins[2]] < 1e-3 * spectra["square"][bins[1]]
    assert spectra["square"][bins[3]] / spectra["square"][bins[1]] == pytest.approx(1 / 3, rel=0.05)
    assert spectra["saw"][bins[2]] / spectra["saw"][bins[1]] == pytest.approx(1 / 2, rel=0.05)
    plucked = render_tone("plucked", f0, n, rate)
    assert np.abs(plucked[-2000:-200]).max() < 0.1 * np.abs(plucked[:2000]).max()
    with pytest.raises(ValueError, match="timbre"):
        render_tone("organ", f0, n, rate)


def test_attributes_alone_match_the_render():
    for i in range(10):
        assert sample_attributes(i, 5) == render_clip(i, 5).attributes


def test_dataset_api_and_padding():
    ds = AudioNotesDataset(6, seed=1, offset=10)
    assert len(ds) == 6
    item = ds[2]
    assert item["waveform"].shape == (1, 32_000) and item["waveform"].dtype == torch.float32
    assert item["key"] == "notes-1-00000012" and item["caption"] == render_clip(12, 1).caption
    assert torch.equal(item["waveform"][0, :item["length"]], torch.from_numpy(render_clip(12, 1).waveform))
    assert torch.all(item["waveform"][0, item["length"]:] == 0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["waveform"].shape == (3, 1, 32_000) and len(batch["caption"]) == 3
    unpadded = AudioNotesDataset(2, pad_seconds=None)[0]
    assert unpadded["waveform"].shape == (1, unpadded["length"])
    with pytest.raises(IndexError):
        ds.sample(6)
    with pytest.raises(ValueError, match="pad_seconds"):
        AudioNotesDataset(2, pad_seconds=1.5)
    with pytest.raises(ValueError):
        AudioNotesDataset(-1)
