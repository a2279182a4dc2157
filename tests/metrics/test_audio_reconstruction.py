"""Audio reconstruction metrics: SNR against hand values, the STFT distance (the loss's), and the
audio checker on reconstructions of built-in clips."""

import math

import pytest
import torch

from unimodal.data.audio_sources import AudioNotesClips
from unimodal.metrics.audio_reconstruction import (MAX_SNR_DB, AudioReconstructionMeter, snr_db,
                                                   stft_distance)


def test_snr_against_hand_values():
    ref = torch.tensor([[[3.0, 4.0, 0.0, 0.0]]])                  # energy 25
    est = torch.tensor([[[3.0, 3.0, 0.0, 0.0]]])                  # error energy 1
    assert snr_db(ref, est).item() == pytest.approx(10 * math.log10(25))   # 13.98 dB
    # a batch: error energy 2.5 against 25 -> 10 dB; exact -> capped; silence -> far below 0
    refs = torch.stack([ref[0], ref[0], ref[0]])
    ests = torch.stack([ref[0] + torch.tensor([[0.5, 0.5, 1.0, 1.0]]), ref[0], torch.zeros(1, 4)])
    assert snr_db(refs, ests).tolist() == pytest.approx([10.0, MAX_SNR_DB, 0.0])


def test_stft_distance_is_zero_for_equal_clips_and_grows_with_the_error():
    clips = torch.stack([AudioNotesClips(2, 16000, 16000)[i]["waveform"] for i in range(2)])
    assert stft_distance(clips, clips, [512]).tolist() == [0.0, 0.0]
    small = stft_distance(clips, clips + 0.001 * torch.randn_like(clips), [512])
    large = stft_distance(clips, clips + 0.1 * torch.randn_like(clips), [512])
    assert (small > 0).all() and (large > small).all()


def test_meter_scores_whole_clips_with_the_checker_and_skips_crops():
    data = AudioNotesClips(6, 16000, 32000)
    clips = torch.stack([data[i]["waveform"] for i in range(6)])
    keys = [data[i]["key"] for i in range(6)]
    meter = AudioReconstructionMeter(16000, 32000, [512, 1024])
    meter.update(clips, clips, keys)                   # a perfect tokenizer
    meter.update(clips, torch.zeros_like(clips), keys)  # one that outputs silence
    out = meter.compute()
    assert out["clips"] == 12 and out["snr_db"] == pytest.approx(MAX_SNR_DB / 2)
    assert out["checker"]["clips"] == 12 and out["checker"]["prompt"] == pytest.approx(0.5)
    cropped = AudioReconstructionMeter(16000, 8000)
    cropped.update(clips[:, :, :8000], clips[:, :, :8000], keys)
    assert "checker" not in cropped.compute()  # 0.5 s crops lost notes their captions count
