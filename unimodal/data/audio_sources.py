"""Audio input for the audio tokenizer: the built-in audio notes, or a folder of WAV/FLAC files.

Design choices:
- Samples: {"waveform": float32 (1, clip_samples) in [-1, 1], "length": samples before padding,
  "caption": str, "key": str}, so the image loader's collate (`collate_skip_none`) stacks them.
- Every clip is cropped (from its start) or zero-padded (at its end) to `clip_samples`: a batch
  stacks, and the tokenizer's grid is fixed. The notes keep their keys `notes-<seed>-<index>`, so
  the audio checker can score reconstructions against the captions of the originals.
- Folder files are decoded with soundfile (the `audio` extra), imported inside the decoder so the
  core imports without it. Multi-channel files are mixed down to mono (channel mean).
- Resampling only where it is trivial: a rate that is a whole multiple of the target is low-pass
  filtered (windowed sinc at 0.9 x the new Nyquist) and decimated; any other rate raises
  `SampleRateError` naming the file and both rates (resample the folder beforehand instead of
  training on a silently different signal).
- An unreadable file is skipped (the item is None) and counted per folder by the image sources'
  `BadSampleCounter`; the trainer prints the counts at the end, and a folder with more than
  `max_bad_fraction` bad files stops the run naming it.
- Held-out split of a folder: the files whose relative path hashes (crc32) to 0 mod 100, as for
  image folders; notes: train = indices [0, num_samples), held-out = the next heldout_samples.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch

from unimodal.data.audio_notes import AudioNotesDataset
from unimodal.data.image_sources import BadSampleCounter, in_split

AUDIO_SOURCES = ("notes", "folder")
AUDIO_EXTS = (".wav", ".flac")
_DECIMATION_TAPS_PER_FACTOR = 32  # filter length 2 * 32 * factor + 1: > 60 dB stop band


class SampleRateError(ValueError):
    """A file's sample rate that cannot be converted to the model's by whole-number decimation."""


def fit_length(wave: torch.Tensor, clip_samples: int) -> torch.Tensor:
    """(samples,) -> (clip_samples,): the first clip_samples, zero-padded at the end if shorter."""
    wave = wave[:clip_samples]
    return torch.nn.functional.pad(wave, (0, clip_samples - wave.numel()))


def decimate(wave: np.ndarray, factor: int) -> np.ndarray:
    """Low-pass (windowed sinc, cut-off 0.9 x the new Nyquist) then keep every `factor`-th sample."""
    if factor == 1:
        return wave
    taps = _DECIMATION_TAPS_PER_FACTOR * factor
    n = np.arange(-taps, taps + 1)
    cutoff = 0.9 / factor  # as a fraction of the old Nyquist
    kernel = cutoff * np.sinc(cutoff * n) * np.blackman(len(n))
    kernel /= kernel.sum()  # unit gain at DC
    return np.convolve(wave, kernel, mode="same")[::factor]


def decode_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A WAV/FLAC file as mono float32 at `sample_rate` (full length; see `fit_length`)."""
    import soundfile  # the `audio` extra; imported here so the core imports without it

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sample_rate:
        if rate < sample_rate or rate % sample_rate:
            raise SampleRateError(
                f"{path}: sample rate {rate} Hz cannot be converted to model.sample_rate="
                f"{sample_rate} Hz by whole-number decimation (e.g. {2 * sample_rate} or "
                f"{3 * sample_rate} Hz would be); resample the files first, e.g. "
                f"`ffmpeg -i IN -ar {sample_rate} -ac 1 OUT.wav`")
        mono = decimate(mono.astype(np.float64), rate // sample_rate)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


class AudioNotesClips(torch.utils.data.Dataset):
    """The built-in audio notes (`AudioNotesDataset`) cropped or padded to `clip_samples`."""

    def __init__(self, num_samples: int, sample_rate: int, clip_samples: int, seed: int = 0,
                 offset: int = 0):
        self.notes = AudioNotesDataset(num_samples, sample_rate, seed, offset, pad_seconds=None)
        self.clip_samples = clip_samples

    def __len__(self) -> int:
        return len(self.notes)

    def __getitem__(self, i: int) -> dict:
        item = self.notes[i]
        wave = item["waveform"][0]
        return {"waveform": fit_length(wave, self.clip_samples)[None],
                "length": min(wave.numel(), self.clip_samples),
                "caption": item["caption"], "key": item["key"]}


class AudioFolderSource(torch.utils.data.Dataset):
    """root/**/*.wav|*.flac (hidden files and folders ignored); a sidecar `<stem>.txt` is the caption."""

    def __init__(self, root: str | Path, sample_rate: int, clip_samples: int,
                 counter: BadSampleCounter | None = None, split: str | None = None):
        try:  # fail here, not as every file "unreadable" in __getitem__
            import soundfile  # noqa: F401
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError("audio folders (data.source=folder) are decoded with "
                                      "soundfile: pip install -e '.[audio]'", name=err.name) from err
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.path={str(root)!r}: not a folder of audio files")
        self.sample_rate, self.clip_samples = sample_rate, clip_samples
        self.counter = counter if counter is not None else BadSampleCounter(kind="audio")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_EXTS
                       and p.is_file() and not any(part.startswith(".")
                                                   for part in p.relative_to(self.root).parts))
        self.files = [p for p in files if in_split(self._key(p), split)]
        if not self.files:
            raise FileNotFoundError(f"data.path={str(root)!r}: no {'/'.join(AUDIO_EXTS)} files"
                                    + (f" in the {split} split" if split else ""))

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).with_suffix("").as_posix()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict | None:
        path = self.files[i]
        try:
            wave = torch.from_numpy(decode_audio(path, self.sample_rate))
        except SampleRateError:
            raise  # a setting to fix, not a broken file
        except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / OSError
            self.counter.record_bad(str(self.root), str(path), f"{type(err).__name__}: {err}")
            return None
        self.counter.good(str(self.root))
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text().strip() if sidecar.is_file() else ""
        return {"waveform": fit_length(wave, self.clip_samples)[None],
                "length": min(wave.numel(), self.clip_samples), "caption": caption,
                "key": self._key(path)}


def build_audio_dataset(source: str, path: str, sample_rate: int, clip_samples: int,
                        split: str = "train", num_samples: int = 1000, heldout_samples: int = 64,
                        seed: int = 0, counter: BadSampleCounter | None = None):
    """The audio dataset of `split` ("train" | "heldout"); the split rules are in the docstring."""
    if source not in AUDIO_SOURCES:
        raise ValueError(f"data.source={source!r}: audio takes one of {AUDIO_SOURCES}")
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}: must be 'train' or 'heldout'")
    if source == "notes":
        if split == "train":
            return AudioNotesClips(num_samples, sample_rate, clip_samples, seed, offset=0)
        return AudioNotesClips(heldout_samples, sample_rate, clip_samples, seed, offset=num_samples)
    return AudioFolderSource(path, sample_rate, clip_samples, counter, split=split)


def write_wav(path: Path, waveform: torch.Tensor, sample_rate: int) -> None:
    """Mono 16-bit PCM WAV with the standard library (no audio package needed to listen)."""
    pcm = (waveform.float().clamp(-1, 1).reshape(-1).cpu().numpy() * 32767).round()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.astype("<i2").tobytes())
