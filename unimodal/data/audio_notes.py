"""Built-in procedural "audio notes" dataset: 1-4 notes in sequence with an English caption.

The audio analogue of `unimodal.data.shapes`; `unimodal.metrics.audio_checker` scores clips
against their captions. Design choices (the checker relies on all of them):
- 16 kHz mono float32 in [-1, 1] by default; 1-2 s per clip; any rate 8-48 kHz renders the same clip
  (times are stored in seconds, so the attributes do not depend on the sample rate).
- Pitches come from C major pentatonic, C4..A5 (261.6-880 Hz): neighbouring scale notes are >= 2
  semitones apart, so direction is unambiguous and a pitch estimate snaps to one scale note.
- Direction: "rising" (each note higher than the one before), "falling" (each lower) or "repeated"
  (every note the same pitch), drawn for 2-4 notes; a single note has no direction (None).
- Timbres are additive and band-limited (harmonics below 0.45 x the sample rate, so no aliasing):
  sine = fundamental only; square = odd harmonics at 1/k; saw = every harmonic at 1/k; plucked =
  every harmonic at 1/k, each decaying exponentially (higher harmonics faster) from a 2 ms attack.
- Every note is peak-normalised, then the clip is scaled to its peak: quiet 0.2-0.3, loud 0.65-0.9,
  so a single threshold (0.45) separates the two.
- Notes are separated by 60-100 ms of exact silence and sustained notes have 10 ms raised-cosine
  fades: no clicks, and an energy envelope segments the notes even when the pitch repeats.
- Captions follow one template: "<count> [<direction>] notes, <timbre words>, <loudness>",
  e.g. "three rising notes, square wave, loud" or "one note, sine wave, quiet".
- A clip is a pure function of (index, seed) via numpy.random.default_rng((seed, index)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
MIN_DURATION, MAX_DURATION = 1.0, 2.0  # seconds per clip
TIMBRES: tuple[str, ...] = ("sine", "square", "saw", "plucked")
TIMBRE_WORDS: dict[str, str] = {
    "sine": "sine wave", "square": "square wave", "saw": "sawtooth wave", "plucked": "plucked string",
}
DIRECTIONS: tuple[str, ...] = ("rising", "falling", "repeated")
LOUDNESS: tuple[str, ...] = ("quiet", "loud")
PEAK_RANGE: dict[str, tuple[float, float]] = {"quiet": (0.2, 0.3), "loud": (0.65, 0.9)}
LOUDNESS_THRESHOLD = 0.45  # peak amplitude between the quiet and loud ranges
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
MAX_NOTES = len(COUNT_WORDS)
# C major pentatonic over two octaves, as MIDI note numbers: C4 D4 E4 G4 A4 C5 D5 E5 G5 A5.
SCALE_MIDI: tuple[int, ...] = (60, 62, 64, 67, 69, 72, 74, 76, 79, 81)
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

_EDGE_SILENCE = 0.05  # seconds of silence before the first note and after the last
_GAP_RANGE = (0.06, 0.10)  # seconds of silence between notes
_FADE = 0.010  # raised-cosine fade in and out of every sustained note, seconds
_PLUCK_ATTACK = 0.002  # a plucked note starts sharply but without a click
_HARMONIC_LIMIT = 0.45  # highest harmonic as a fraction of the sample rate (below Nyquist)


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def note_name(midi: int) -> str:
    return f"{_NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


SCALE_HZ: tuple[float, ...] = tuple(midi_to_hz(m) for m in SCALE_MIDI)


@dataclass(frozen=True)
class Note:
    midi: int        # one of SCALE_MIDI
    start: float     # seconds from the start of the clip
    duration: float  # seconds, fades included

    @property
    def frequency(self) -> float:
        return midi_to_hz(self.midi)


@dataclass(frozen=True)
class NoteClip:
    """The generating attributes of one clip; `render_notes` turns them into a waveform."""
    timbre: str               # one of TIMBRES
    notes: tuple[Note, ...]   # in time order
    direction: str | None     # one of DIRECTIONS; None for a single note
    loudness: str             # one of LOUDNESS
    peak: float               # peak amplitude of the waveform, inside PEAK_RANGE[loudness]
    duration: float           # seconds

    @property
    def count(self) -> int:
        return len(self.notes)


@dataclass(frozen=True)
class AudioSample:
    waveform: np.ndarray  # float32 (samples,), in [-1, 1]
    caption: str
    attributes: NoteClip
    sample_rate: int


def check_sample_rate(sample_rate: int) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an int in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, "
                         f"got {sample_rate!r}")


def direction_of(midis) -> str | None:
    """The direction word for a pitch sequence; None for one note, "mixed" for anything else."""
    steps = np.diff(np.asarray(midis, dtype=float))
    if len(steps) == 0:
        return None
    if np.all(steps > 0):
        return "rising"
    if np.all(steps < 0):
        return "falling"
    if np.all(steps == 0):
        return "repeated"
    return "mixed"


def caption_for(count: int, direction: str | None, timbre: str, loudness: str) -> str:
    if not 1 <= count <= MAX_NOTES:
        raise ValueError(f"count must be in 1..{MAX_NOTES}, got {count!r}")
    if (count == 1) != (direction is None):
        raise ValueError(f"a single note has no direction and 2+ notes need one; got {count} and {direction!r}")
    notes = "one note" if count == 1 else f"{COUNT_WORDS[count - 1]} {direction} notes"
    return f"{notes}, {TIMBRE_WORDS[timbre]}, {loudness}"


def caption_of(clip: NoteClip) -> str:
    return caption_for(clip.count, clip.direction, clip.timbre, clip.loudness)


# ----------------------------------------------------------------------------------------- sampling
def _sample_pitches(rng: np.random.Generator, count: int, direction: str | None) -> list[int]:
    if direction == "repeated" or count == 1:
        return [SCALE_MIDI[int(rng.integers(len(SCALE_MIDI)))]] * count
    picks = sorted(int(i) for i in rng.choice(len(SCALE_MIDI), size=count, replace=False))
    midis = [SCALE_MIDI[i] for i in picks]
    return midis if direction == "rising" else midis[::-1]


def sample_attributes(index: int, seed: int = 0) -> NoteClip:
    """The attributes of clip (index, seed): no rendering, the same at every sample rate."""
    rng = np.random.default_rng((int(seed), int(index)))
    count = int(rng.integers(1, MAX_NOTES + 1))
    direction = None if count == 1 else DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    midis = _sample_pitches(rng, count, direction)
    timbre = TIMBRES[int(rng.integers(len(TIMBRES)))]
    loudness = LOUDNESS[int(rng.integers(len(LOUDNESS)))]
    peak = round(float(rng.uniform(*PEAK_RANGE[loudness])), 4)
    duration = round(float(rng.uniform(MIN_DURATION, MAX_DURATION)), 4)
    gap = float(rng.uniform(*_GAP_RANGE))
    # Equal note lengths filling the clip: >= 150 ms each for four notes in one second.
    note_length = (duration - 2 * _EDGE_SILENCE - (count - 1) * gap) / count
    notes = tuple(Note(midi, round(_EDGE_SILENCE + k * (note_length + gap), 4), round(note_length, 4))
                  for k, midi in enumerate(midis))
    return NoteClip(timbre, notes, direction, loudness, peak, duration)


# ---------------------------------------------------------------------------------------- rendering
def _fade(length: int, fade: int) -> np.ndarray:
    """Raised-cosine ramps of `fade` samples at both ends of a window of `length`."""
    envelope = np.ones(length)
    fade = min(fade, length // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
        envelope[:fade] = ramp
        envelope[length - fade:] = ramp[::-1]
    return envelope


def render_tone(timbre: str, frequency: float, num_samples: int, sample_rate: int) -> np.ndarray:
    """One note of `timbre` at `frequency`, peak-normalised to 1 (float64, `num_samples` long)."""
    t = np.arange(num_samples) / sample_rate
    harmonics = np.arange(1, max(1, int(_HARMONIC_LIMIT * sample_rate // frequency)) + 1)
    if timbre == "sine":
        harmonics = harmonics[:1]
        amplitudes = np.ones(1)
    elif timbre == "square":
        harmonics = harmonics[harmonics % 2 == 1]
        amplitudes = 1.0 / harmonics
    elif timbre in ("saw", "plucked"):
        amplitudes = 1.0 / harmonics
    else:
        raise ValueError(f"unknown timbre {timbre!r}; expected one of {TIMBRES}")
    tone = np.zeros(num_samples)
    seconds = num_samples / sample_rate
    for k, a in zip(harmonics, amplitudes):
        partial = a * np.sin(2 * np.pi * k * frequency * t)
        if timbre == "plucked":
            # A string's upper partials die faster; the fundamental falls ~35 dB over the note.
            tau = seconds / 4 / (1 + 0.3 * (k - 1))
            partial *= np.exp(-t / tau)
        tone += partial
    if timbre == "plucked":
        attack = max(1, int(round(_PLUCK_ATTACK * sample_rate)))
        envelope = _fade(num_samples, int(round(_FADE * sample_rate)))
        envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(attack) + 0.5) / attack)
    else:
        envelope = _fade(num_samples, int(round(_FADE * sample_rate)))
    tone *= envelope
    return tone / max(np.abs(tone).max(), 1e-12)


def render_notes(clip: NoteClip, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The waveform of `clip`: float32 (round(duration * sample_rate),), peak = clip.peak."""
    check_sample_rate(sample_rate)
    wave = np.zeros(int(round(clip.duration * sample_rate)))
    for note in clip.notes:
        start = int(round(note.start * sample_rate))
        length = min(int(round(note.duration * sample_rate)), len(wave) - start)
        wave[start:start + length] += render_tone(clip.timbre, note.frequency, length, sample_rate)
    peak = np.abs(wave).max()
    if peak > 0:
        wave *= clip.peak / peak
    return wave.astype(np.float32)


def render_clip(index: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> AudioSample:
    """Clip (index, seed) rendered at `sample_rate`; the attributes ignore the sample rate."""
    check_sample_rate(sample_rate)
    clip = sample_attributes(index, seed)
    return AudioSample(render_notes(clip, sample_rate), caption_of(clip), clip, int(sample_rate))


class AudioNotesDataset(torch.utils.data.Dataset):
    """Clips offset .. offset+num_samples-1 of the stream for `seed`; disjoint offsets = disjoint splits.

    Waveforms are zero-padded at the end to `pad_seconds` (default the longest clip, 2 s) so a
    default DataLoader can stack them; "length" keeps the unpadded sample count. pad_seconds=None
    returns each clip at its own length.
    """

    def __init__(self, num_samples: int, sample_rate: int = SAMPLE_RATE, seed: int = 0, offset: int = 0,
                 pad_seconds: float | None = MAX_DURATION):
        check_sample_rate(sample_rate)
        if num_samples < 0 or offset < 0:
            raise ValueError(f"num_samples and offset must be >= 0, got {num_samples!r} and {offset!r}")
        if pad_seconds is not None and pad_seconds < MAX_DURATION:
            raise ValueError(f"pad_seconds must be >= {MAX_DURATION} (the longest clip) or None, "
                             f"got {pad_seconds!r}")
        self.num_samples, self.sample_rate, self.seed, self.offset = num_samples, sample_rate, seed, offset
        self.pad_seconds = pad_seconds

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, i: int) -> AudioSample:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for AudioNotesDataset of {self.num_samples} samples")
        return render_clip(self.offset + i, seed=self.seed, sample_rate=self.sample_rate)

    def __getitem__(self, i: int) -> dict:
        sample = self.sample(i)
        wave = torch.from_numpy(sample.waveform)
        length = wave.numel()
        if self.pad_seconds is not None:
            wave = torch.nn.functional.pad(wave, (0, int(round(self.pad_seconds * self.sample_rate)) - length))
        return {
            "waveform": wave.unsqueeze(0),  # (1, samples): mono channel first
            "length": length,
            "caption": sample.caption,
            "key": f"notes-{self.seed}-{self.offset + i:08d}",
        }
