"""Audio input of the audio tokenizer: the notes cropped/padded to the clip, and folders of
WAV/FLAC files (mono mix-down, whole-number decimation, clear rate errors, bad files skipped and
counted). Folder tests need soundfile (the `audio` extra) and are skipped without it."""

import wave

import numpy as np
import pytest
import torch

from unimodal.data.audio_notes import render_clip
from unimodal.data.audio_sources import (AudioFolderSource, AudioNotesClips, SampleRateError,
                                         build_audio_dataset, decimate, fit_length)
from unimodal.data.image_sources import BadSampleCounter, collate_skip_none


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    """16-bit PCM with the standard library; samples (n,) or (n, channels) in [-1, 1]."""
    samples = samples.reshape(len(samples), -1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 32767).round().astype("<i2").tobytes())


def test_notes_are_cropped_or_padded_to_the_clip_and_keep_their_keys():
    short, full = AudioNotesClips(3, 16000, 8000, seed=0), AudioNotesClips(3, 16000, 32000, seed=0)
    for i in range(3):
        wave_ = render_clip(i, 0, 16000).waveform
        a, b = short[i], full[i]
        assert a["waveform"].shape == (1, 8000) and b["waveform"].shape == (1, 32000)
        assert torch.equal(a["waveform"][0], torch.from_numpy(wave_[:8000]))
        assert torch.equal(b["waveform"][0, :len(wave_)], torch.from_numpy(wave_))
        assert b["waveform"][0, len(wave_):].abs().sum() == 0 and b["length"] == len(wave_)
        assert a["key"] == b["key"] == f"notes-0-{i:08d}"
    batch = collate_skip_none([full[0], full[1]])
    assert batch["waveform"].shape == (2, 1, 32000)
    heldout = build_audio_dataset("notes", "", 16000, 8000, "heldout", num_samples=10,
                                  heldout_samples=2)
    assert heldout[0]["key"] == "notes-0-00000010"  # after the training split
    assert torch.equal(fit_length(torch.ones(3), 5), torch.tensor([1.0, 1, 1, 0, 0]))


def test_decimation_keeps_a_low_tone_and_removes_one_above_the_new_nyquist():
    t = np.arange(48000) / 48000
    low, high = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 10000 * t)  # 10 kHz > 8 kHz
    out_low, out_high = decimate(low, 3), decimate(high, 3)
    assert len(out_low) == 16000
    assert np.sqrt(np.mean(out_low[500:-500] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.01)
    assert np.sqrt(np.mean(out_high[500:-500] ** 2)) < 0.01  # no alias at 6 kHz


def test_folder_mixes_down_decimates_and_skips_a_corrupt_file(tmp_path):
    pytest.importorskip("soundfile")
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(tmp_path / "a.wav", tone, 16000)
    write_wav(tmp_path / "b.wav", np.stack([tone, np.zeros_like(tone)], 1), 16000)  # stereo
    t48 = np.arange(48000) / 48000
    write_wav(tmp_path / "c.wav", 0.5 * np.sin(2 * np.pi * 440 * t48), 48000)  # decimated by 3
    (tmp_path / "a.txt").write_text("a tone")
    (tmp_path / "broken.flac").write_bytes(b"fLaC this is not audio")
    (tmp_path / ".hidden.wav").write_bytes(b"ignored")
    counter = BadSampleCounter(kind="audio")
    source = AudioFolderSource(tmp_path, 16000, 8000, counter)  # split None: every file
    items = {source.files[i].name: source[i] for i in range(len(source))}
    assert sorted(items) == ["a.wav", "b.wav", "broken.flac", "c.wav"]
    assert items["broken.flac"] is None and counter.total_bad == 1 and counter.total_seen == 4
    assert "broken.flac" in counter.summary() and counter.summary().startswith("audio data:")
    a, b, c = items["a.wav"], items["b.wav"], items["c.wav"]
    assert a["waveform"].shape == (1, 8000) and a["caption"] == "a tone" and a["key"] == "a"
    torch.testing.assert_close(b["waveform"], a["waveform"] / 2, atol=1e-4, rtol=0)  # mono mean
    torch.testing.assert_close(c["waveform"][:, 200:-200], a["waveform"][:, 200:-200],
                               atol=0.01, rtol=0)
    assert collate_skip_none(list(items.values()))["waveform"].shape == (3, 1, 8000)


def test_a_rate_that_is_not_a_whole_multiple_names_the_file_and_the_rates(tmp_path):
    pytest.importorskip("soundfile")
    write_wav(tmp_path / "cd.wav", np.zeros(4410), 44100)
    source = AudioFolderSource(tmp_path, 16000, 8000)
    with pytest.raises(SampleRateError, match=r"cd\.wav: sample rate 44100 Hz .* model\.sample_rate=16000"):
        source[0]


def test_bad_folders_and_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"data\.source='shapes': audio takes"):
        build_audio_dataset("shapes", "", 16000, 8000)
    pytest.importorskip("soundfile")
    with pytest.raises(FileNotFoundError, match="no .wav/.flac files"):
        build_audio_dataset("folder", str(tmp_path), 16000, 8000)


def test_without_soundfile_a_folder_says_which_extra_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "soundfile", None)  # as if the `audio` extra were missing
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[audio\]'"):
        build_audio_dataset("folder", str(tmp_path), 16000, 8000)
