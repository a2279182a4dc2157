"""What tokenizers/encode.py reads for each kind of tokenizer: images, audio clips or video clips.

The tokenizer's saved config names its modality (`model.modality`); the `data.*` keys are read
for that modality, exactly as tokenizers/train_rdpm.py reads them, so a tokenizer encodes the
same clips it was trained on (same sources, same train / held-out split, same seed):
- image: data.source shapes | folder | webdataset at data.image_size (must be the tokenizer's);
- audio: data.source notes | folder (WAV/FLAC), cropped or padded to the tokenizer's clip_samples
  at its sample_rate;
- video: data.source moving_shapes, clips of the tokenizer's num_frames at its image_size,
  channels first (3, F, H, W) as the 3-D encoder takes them.
Samples without a class id (audio, video) are written without one (class id -1, no `cls` field).
"""

from __future__ import annotations

from unimodal.config import ConfigError
from unimodal.data.audio_sources import build_audio_dataset
from unimodal.data.image_sources import BadSampleCounter, build_image_dataset
from unimodal.data.moving_shapes import ChannelsFirstClips, MovingShapesDataset
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig
from unimodal.data.tokenizer_data import TokenizerDataConfig

# The field of a dataset item that holds the tokenizer's input, per tokenizer modality.
INPUT_KEYS = {"image": "image", "audio": "waveform", "video": "video"}


def validate_encode_data(data: TokenizerDataConfig, tok: RDPMTokenizerConfig) -> None:
    """ConfigError naming the data key when `data` does not fit a tokenizer of this modality."""
    if tok.modality == "audio":
        data.validate_audio()
    elif tok.modality == "video":
        data.validate_video()
    else:
        try:
            data.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if tok.image_size != data.image_size:
            raise ConfigError(f"data.image_size={data.image_size} but the tokenizer was trained "
                              f"at {tok.image_size} px")


def build_encode_dataset(data: TokenizerDataConfig, tok: RDPMTokenizerConfig, split: str,
                         counter: BadSampleCounter):
    """The samples to encode: dicts with the modality's input (INPUT_KEYS), "key", "caption"
    and, for images, "class_id"."""
    if tok.modality == "audio":
        return build_audio_dataset(data.source, data.path, tok.sample_rate, tok.clip_samples,
                                   split, data.num_samples, data.heldout_samples, data.seed,
                                   counter)
    if tok.modality == "video":
        count, offset = ((data.num_samples, 0) if split == "train"
                         else (data.heldout_samples, data.num_samples))  # disjoint splits
        return ChannelsFirstClips(MovingShapesDataset(count, tok.num_frames, tok.image_size,
                                                      data.seed, offset=offset))
    return build_image_dataset(data, split, counter=counter)
