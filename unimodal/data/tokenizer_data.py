"""The data section (`data.*`) of tokenizer training (tokenizers/train_rdpm.py) and encoding
(tokenizers/encode.py): the image sources' keys, checked per modality of the tokenizer."""

from __future__ import annotations

from dataclasses import dataclass

from unimodal.config import ConfigError
from unimodal.data.audio_sources import AUDIO_SOURCES
from unimodal.data.image_sources import ImageDataConfig

VIDEO_SOURCES = ("moving_shapes",)  # model.modality=video: the built-in moving-shapes clips


@dataclass
class TokenizerDataConfig(ImageDataConfig):
    """data.*: the image sources (shapes | folder | webdataset) for model.modality=image, the audio
    ones (notes | folder) for audio, moving_shapes for video. `image_size` applies to images only;
    audio clips take model.sample_rate and model.clip_samples, video clips model.num_frames and
    model.image_size. num_samples / heldout_samples: shapes, notes and moving_shapes."""

    def validate_audio(self) -> None:
        if self.source not in AUDIO_SOURCES:
            raise ConfigError(f"data.source={self.source!r}: model.modality=audio takes one of "
                              f"{AUDIO_SOURCES}")
        if self.source == "folder" and not self.path.strip():
            raise ConfigError("data.path='': required for data.source='folder' (a folder of "
                              "WAV/FLAC files)")
        self._validate_counts()

    def validate_video(self) -> None:
        if self.source not in VIDEO_SOURCES:
            raise ConfigError(f"data.source={self.source!r}: model.modality=video takes one of "
                              f"{VIDEO_SOURCES}")
        self._validate_counts()

    def _validate_counts(self) -> None:
        for key, low in (("num_samples", 1), ("heldout_samples", 0), ("num_workers", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"data.{key}={getattr(self, key)}: must be >= {low}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ConfigError(f"data.max_bad_fraction={self.max_bad_fraction}: must be in [0, 1]")
