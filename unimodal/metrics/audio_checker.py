"""Prompt following on the built-in audio notes (`unimodal.data.audio_notes`) without any weights.

A checker finds the notes in a waveform (segments, pitch, timbre) and scores them against what a
caption asks for: note count, direction, timbre and loudness, and the whole prompt.

Design choices, one line each:
- Segments: 10 ms frames every 5 ms; a frame is sounding when its RMS is within 30 dB of the
  loudest frame, above -60 dBFS and above 3x the noise floor (5th-percentile frame RMS, counted
  up to -20 dB of the loudest frame); runs closer than 20 ms merge, runs shorter than 30 ms are
  dropped. The data puts >= 60 ms of silence between notes, so repeated pitches still split.
- Pitch: the strongest spectral peak at 150-1200 Hz (the scale spans 262-880 Hz) of the Hann-
  windowed middle 70% of a note, refined by a parabola on log magnitude; when the half frequency
  holds over half as much, it is taken instead (a weak fundamental is not an octave up).
- Harmonicity: the share of spectral power within a few bins of the harmonics of that pitch;
  below 0.6 the note is unpitched ("noise"): white noise has no timbre, pitch or direction.
- Decay: mean frame RMS over 60-90% of a note over that of 10-40%; plucked notes fall to ~0.2,
  sustained ones stay ~1, so decay < 0.5 is "plucked" whatever the harmonics.
- Sustained timbres: the nearest (Euclidean) of three templates of harmonics 2-5 relative to the
  fundamental: sine (0, 0, 0, 0), square (0, 1/3, 0, 1/5), saw (1/2, 1/3, 1/4, 1/5).
- The clip's timbre is its notes' common class ("mixed" when they disagree); direction compares
  consecutive pitches with a half-semitone dead band (the scale's steps are >= 2 semitones).
- Loudness: the 99.9th percentile of |x| over the sounding samples against 0.45 (the data's quiet
  peaks are <= 0.3, loud ones >= 0.65); a percentile so a single stray sample does not decide.
- Silence has no notes: count, direction, timbre and loudness are all wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from unimodal.data.audio_notes import (COUNT_WORDS, DIRECTIONS, LOUDNESS, LOUDNESS_THRESHOLD,
                                       SAMPLE_RATE, SCALE_MIDI, TIMBRE_WORDS, TIMBRES, NoteClip,
                                       sample_attributes)
from unimodal.metrics.hit_counts import HitCounts, builtin_spec

FRAME_SECONDS, HOP_SECONDS = 0.010, 0.005
RELATIVE_FLOOR_DB, ABSOLUTE_FLOOR_DB = -30.0, -60.0
MERGE_GAP_SECONDS, MIN_NOTE_SECONDS = 0.020, 0.030
NOISE_FLOOR_PERCENTILE, NOISE_FLOOR_FACTOR, MAX_THRESHOLD_DB = 5.0, 3.0, -20.0
PITCH_RANGE_HZ = (150.0, 1200.0)
MIN_HARMONICITY = 0.6
PLUCKED_DECAY = 0.5
DIRECTION_DEAD_BAND = 0.5  # semitones
LOUDNESS_PERCENTILE = 99.9
_HARMONIC_TEMPLATES = {  # harmonics 2..5 relative to the fundamental
    "sine": np.array([0.0, 0.0, 0.0, 0.0]),
    "square": np.array([0.0, 1 / 3, 0.0, 1 / 5]),
    "saw": np.array([1 / 2, 1 / 3, 1 / 4, 1 / 5]),
}


# ---------------------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class DetectedNote:
    start: float                   # seconds
    stop: float                    # seconds
    frequency: float | None        # Hz; None when unpitched
    midi: float | None             # fractional MIDI number of `frequency`
    harmonicity: float             # share of power on the harmonics of `frequency`
    harmonics: tuple[float, ...]   # amplitudes of harmonics 2..5 relative to the fundamental
    decay: float                   # late RMS / early RMS within the note
    timbre: str                    # one of TIMBRES, or "noise" when unpitched


@dataclass(frozen=True)
class DetectedClip:
    notes: tuple[DetectedNote, ...]
    timbre: str | None       # the notes' common timbre; "mixed" when they differ; None without notes
    direction: str | None    # as `direction_of`; None for one note; "unknown" without pitches or notes
    loudness: str | None     # one of LOUDNESS; None without notes
    peak: float              # the loudness statistic (high percentile of |x| over the notes)

    @property
    def count(self) -> int:
        return len(self.notes)


def _frame_rms(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if len(wave) < frame:
        return np.zeros(0)
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, len(wave) - frame + 1, hop)
    return np.sqrt(np.maximum(energy[starts + frame] - energy[starts], 0.0) / frame)


def segment_notes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, stop) sample ranges of the sounding runs of `wave`, in time order."""
    frame, hop = int(round(FRAME_SECONDS * sample_rate)), int(round(HOP_SECONDS * sample_rate))
    rms = _frame_rms(wave, frame, hop)
    if rms.size == 0:
        return []
    # A noise floor (a quiet frame's RMS) raises the threshold so noisy gaps still split notes;
    # the cap keeps the notes of a clip without any quiet frame.
    noise_floor = NOISE_FLOOR_FACTOR * np.percentile(rms, NOISE_FLOOR_PERCENTILE)
    cap = rms.max() * 10 ** (MAX_THRESHOLD_DB / 20)
    threshold = max(rms.max() * 10 ** (RELATIVE_FLOOR_DB / 20), 10 ** (ABSOLUTE_FLOOR_DB / 20),
                    min(noise_floor, cap))
    sounding = np.flatnonzero(rms >= threshold)
    if sounding.size == 0:
        return []
    runs: list[list[int]] = []  # [first frame, last frame]
    merge = MERGE_GAP_SECONDS * sample_rate / hop
    for i in sounding:
        if runs and i - runs[-1][1] <= merge:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    segments = [(int(a * hop), int(min(b * hop + frame, len(wave)))) for a, b in runs]
    return [(a, b) for a, b in segments if b - a >= MIN_NOTE_SECONDS * sample_rate]


def _peak_near(magnitude: np.ndarray, bin_hz: float, frequency: float, width_hz: float) -> float:
    lo, hi = int(max((frequency - width_hz) / bin_hz, 0)), int((frequency + width_hz) / bin_hz) + 1
    return float(magnitude[lo:hi].max()) if hi > lo and lo < len(magnitude) else 0.0


def _pitch(magnitude: np.ndarray, bin_hz: float) -> float:
    lo, hi = int(PITCH_RANGE_HZ[0] / bin_hz), int(PITCH_RANGE_HZ[1] / bin_hz) + 1
    k = lo + int(np.argmax(magnitude[lo:hi]))
    # Parabola through the log magnitudes around the peak: sub-bin accuracy.
    a, b, c = np.log(magnitude[k - 1:k + 2] + 1e-12)
    denominator = a - 2 * b + c
    frequency = (k + (0.5 * (a - c) / denominator if denominator < 0 else 0.0)) * bin_hz
    half = frequency / 2
    if half >= PITCH_RANGE_HZ[0] and _peak_near(magnitude, bin_hz, half, 0.03 * half) > 0.5 * magnitude[k]:
        return half
    return frequency


def classify_timbre(harmonicity: float, decay: float, harmonics: Sequence[float]) -> str:
    if harmonicity < MIN_HARMONICITY:
        return "noise"
    if decay < PLUCKED_DECAY:
        return "plucked"
    measured = np.asarray(harmonics, dtype=float)
    n = len(measured)  # fewer than 4 when the upper harmonics pass the Nyquist limit
    return min(_HARMONIC_TEMPLATES, key=lambda t: float(np.linalg.norm(measured - _HARMONIC_TEMPLATES[t][:n])))


def analyse_note(wave: np.ndarray, start: int, stop: int, sample_rate: int = SAMPLE_RATE) -> DetectedNote:
    """Pitch, harmonic profile, decay and timbre of the note in wave[start:stop]."""
    length = stop - start
    core = wave[start + int(0.15 * length): stop - int(0.15 * length)].astype(np.float64)
    n_fft = max(1 << 14, 1 << int(np.ceil(np.log2(4 * len(core)))))
    magnitude = np.abs(np.fft.rfft(core * np.hanning(len(core)), n_fft))
    bin_hz = sample_rate / n_fft
    frequency = _pitch(magnitude, bin_hz)
    # The Hann main lobe is +-2 bins of the core's own resolution; 3 leaves room for decay smearing.
    width = min(3.0 * sample_rate / len(core), 0.1 * frequency)
    top = 0.45 * sample_rate
    fundamental = _peak_near(magnitude, bin_hz, frequency, width)
    harmonics = tuple(_peak_near(magnitude, bin_hz, k * frequency, width) / max(fundamental, 1e-12)
                      for k in range(2, 6) if k * frequency < top)
    power = magnitude ** 2
    freqs = np.arange(len(magnitude)) * bin_hz
    band = (freqs >= 50.0) & (freqs <= top)
    nearest = np.round(freqs / frequency) * frequency
    on_harmonic = band & (np.abs(freqs - nearest) <= width) & (nearest > 0)
    harmonicity = float(power[on_harmonic].sum() / max(power[band].sum(), 1e-20))
    frame, hop = int(round(FRAME_SECONDS * sample_rate)), int(round(HOP_SECONDS * sample_rate))
    rms = _frame_rms(wave[start:stop], frame, hop)
    n = len(rms)
    early = rms[int(0.1 * n): max(int(0.4 * n), int(0.1 * n) + 1)].mean()
    late = rms[int(0.6 * n): max(int(0.9 * n), int(0.6 * n) + 1)].mean()
    decay = float(late / max(early, 1e-12))
    timbre = classify_timbre(harmonicity, decay, harmonics)
    pitched = timbre != "noise"
    return DetectedNote(
        start=start / sample_rate, stop=stop / sample_rate,
        frequency=frequency if pitched else None,
        midi=69 + 12 * float(np.log2(frequency / 440.0)) if pitched else None,
        harmonicity=harmonicity, harmonics=harmonics, decay=decay, timbre=timbre)


def estimated_direction(midis: Sequence[float | None]) -> str | None:
    if len(midis) == 0 or any(m is None for m in midis):
        return "unknown"
    if len(midis) == 1:
        return None
    steps = np.diff(np.asarray(midis, dtype=float))
    if np.all(steps > DIRECTION_DEAD_BAND):
        return "rising"
    if np.all(steps < -DIRECTION_DEAD_BAND):
        return "falling"
    if np.all(np.abs(steps) <= DIRECTION_DEAD_BAND):
        return "repeated"
    return "mixed"


def detect_notes(waveform, sample_rate: int = SAMPLE_RATE) -> DetectedClip:
    """The notes of a mono waveform (numpy or torch, any shape that squeezes to 1-D)."""
    wave = _as_mono(waveform)
    segments = segment_notes(wave, sample_rate)
    notes = tuple(analyse_note(wave, a, b, sample_rate) for a, b in segments)
    if not notes:
        return DetectedClip((), None, "unknown", None, 0.0)
    timbres = {n.timbre for n in notes}
    sounding = np.concatenate([np.abs(wave[a:b]) for a, b in segments])
    peak = float(np.percentile(sounding, LOUDNESS_PERCENTILE))
    return DetectedClip(
        notes=notes,
        timbre=timbres.pop() if len(timbres) == 1 else "mixed",
        direction=estimated_direction([n.midi for n in notes]),
        loudness="loud" if peak >= LOUDNESS_THRESHOLD else "quiet",
        peak=peak)


def _as_mono(waveform) -> np.ndarray:
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().float().cpu().numpy()
    wave = np.asarray(waveform, dtype=np.float64)
    if wave.ndim > 1:
        wave = wave.squeeze()
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform (samples,) or (1, samples), got shape {np.shape(waveform)}")
    return np.nan_to_num(wave)


# ------------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class AudioSpec:
    count: int
    direction: str | None             # None for one note
    timbre: str
    loudness: str
    midis: tuple[int, ...] | None = None  # the pitches, when known from the attributes (not captions)


def spec_from_clip(clip: NoteClip) -> AudioSpec:
    return AudioSpec(clip.count, clip.direction, clip.timbre, clip.loudness,
                     tuple(n.midi for n in clip.notes))


_CAPTION = re.compile(
    r"\b(?P<count>" + "|".join(COUNT_WORDS) + r")\s+(?:(?P<direction>" + "|".join(DIRECTIONS)
    + r")\s+)?notes?\b")
_TIMBRE = re.compile("|".join(re.escape(words) for words in TIMBRE_WORDS.values()))
_LOUDNESS = re.compile(r"\b(?P<loudness>" + "|".join(LOUDNESS) + r")\b")


def parse_caption(text: str) -> AudioSpec:
    """Count, direction, timbre and loudness of an audio-notes caption ("three rising notes, ...")."""
    lower = text.lower()
    notes, timbre, loudness = _CAPTION.search(lower), _TIMBRE.search(lower), _LOUDNESS.search(lower)
    if notes is None or timbre is None or loudness is None:
        raise ValueError(f"caption {text!r}: needs '<count> [<direction>] notes' (count {list(COUNT_WORDS)}, "
                         f"direction {list(DIRECTIONS)}), one of {list(TIMBRE_WORDS.values())} "
                         f"and one of {list(LOUDNESS)}")
    count = COUNT_WORDS.index(notes.group("count")) + 1
    direction = notes.group("direction")
    if (count == 1) != (direction is None):
        raise ValueError(f"caption {text!r}: one note takes no direction, 2+ notes need one")
    by_words = {words: name for name, words in TIMBRE_WORDS.items()}
    return AudioSpec(count, direction, by_words[timbre.group(0)], loudness.group("loudness"))


# ------------------------------------------------------------------------------------------ scoring
@dataclass
class AudioScore:
    count: bool
    direction: bool
    timbre: bool
    loudness: bool
    pitch: list[bool]  # per asked-for note; empty when the spec names no pitches
    detected: DetectedClip = field(repr=False)

    @property
    def correct(self) -> bool:
        """The whole caption: count, direction, timbre and loudness (pitch is a diagnostic)."""
        return self.count and self.direction and self.timbre and self.loudness


def _nearest_scale_note(midi: float) -> int:
    return min(SCALE_MIDI, key=lambda m: abs(m - midi))


def score_detected(detected: DetectedClip, spec: AudioSpec) -> AudioScore:
    pitch = []
    if spec.midis is not None:
        for k, target in enumerate(spec.midis):
            found = detected.notes[k].midi if k < detected.count else None
            pitch.append(found is not None and _nearest_scale_note(found) == target)
    return AudioScore(
        count=detected.count == spec.count,
        direction=detected.count > 0 and detected.direction == spec.direction,
        timbre=detected.timbre == spec.timbre,
        loudness=detected.loudness == spec.loudness,
        pitch=pitch, detected=detected)


def score_audio(waveform, spec: AudioSpec, sample_rate: int = SAMPLE_RATE) -> AudioScore:
    return score_detected(detect_notes(waveform, sample_rate), spec)


class AudioAccuracy(HitCounts):
    """Running accuracies: per attribute, whole prompt, whole prompt by note count, and timbre by
    the asked-for timbre (which timbres are hard)."""

    KEYS = (("prompt", "count", "direction", "timbre", "loudness", "pitch")
            + tuple(f"prompt_{n}_notes" for n in range(1, len(COUNT_WORDS) + 1))
            + tuple(f"timbre_{t}" for t in TIMBRES))

    TOTAL_KEY = "clips"

    def update(self, score: AudioScore, spec: AudioSpec) -> None:
        for key in ("count", "direction", "timbre", "loudness"):
            self._add(key, [getattr(score, key)])
        self._add("pitch", score.pitch)
        self._add("prompt", [score.correct])
        self._add(f"prompt_{spec.count}_notes", [score.correct])
        self._add(f"timbre_{spec.timbre}", [score.timbre])


# ------------------------------------------------------------------------- tokenizer reconstructions
def spec_for_key(key: str) -> AudioSpec | None:
    """What the caption of a built-in audio-notes clip asks for, from its dataset key
    ('notes-<seed>-<index>', see `AudioNotesDataset`); None for any other source's key."""
    return builtin_spec(key, "notes",
                        lambda seed, index: spec_from_clip(sample_attributes(index, seed)))


def score_reconstructions(accuracy: AudioAccuracy, waveforms, keys: Sequence[str],
                          sample_rate: int = SAMPLE_RATE) -> int:
    """Check reconstructed clips against the captions of their originals.

    waveforms: (B, 1, samples) or (B, samples), zero padding allowed; keys: their dataset keys.
    Returns how many were scored (keys of other sources are skipped).
    """
    return accuracy.update_by_key(waveforms, keys, lambda key, wave: spec_for_key(key),
                                  lambda wave, spec: score_audio(wave, spec, sample_rate))
