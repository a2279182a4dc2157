"""The RDPM tokenizer: encoder -> diffusion quantizer (T steps) -> decoder, for images, audio or
video.

Public surface used by the rest of the project:
- `encode(x, seeds) -> codes (B, T, *grid)`; the seeds regenerate eps_t (see `rdpm_noise`).
- `decode(codes) -> x`: z'_T from codes alone, then the decoder. decode(encode(x)) is the
  reconstruction; no noise is needed to decode.
- `codes_to_latent(codes, upto=t)`: z'_t, which the unified model feeds back as its recurrent input.
- `save_tokenizer` / `load_tokenizer`: safetensors weights + the YAML config in one folder.
`model.modality` picks the input: images are float tensors in [-1, 1], (B, 3, H, W) with
H = W = `image_size`, grid (h, w); audio is mono waveform in [-1, 1], (B, 1, clip_samples) at
`sample_rate`, grid (clip_samples / prod(strides),) -- one code per hop of prod(strides) samples;
video is clips in [-1, 1], (B, 3, F, H, W) channels first as Conv3d takes them (F = `num_frames`,
H = W = `image_size`), grid (F / prod(temporal_strides), H / prod(strides), W / prod(strides)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from unimodal.config import ConfigError, load_config, save_config
from unimodal.tokenizer.autoencoder import UPSAMPLING, Decoder, Encoder, level_strides
from unimodal.tokenizer.rdpm_quantizer import SCHEDULES, QuantizerOutput, RDPMQuantizer

MODALITIES = ("image", "audio", "video")


@dataclass
class RDPMTokenizerConfig:
    size: str = "tiny"                    # named preset (SIZES); fields below override it
    modality: str = "image"               # image (2-D convs) | audio (1-D convs on the waveform)
                                          # | video (3-D convs on (3, F, H, W) clips)
    image_size: int = 64                  # image, video: H = W of the input images / frames
    num_frames: int = 8                   # video: frames F per clip (divisible by prod(temporal_strides))
    sample_rate: int = 16000              # audio: samples per second of the waveform
    clip_samples: int = 32000             # audio: samples per clip (divisible by prod(strides))
    in_channels: int = 3                  # 3 for RGB images, 1 for mono audio
    base_channels: int = 32               # width of the first level
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4])  # one entry per level
    strides: list[int] = field(default_factory=list)  # per level transition; [] = 2 each (images)
    # video: the time axis's stride per level transition; [] = 1 each (frames never downsampled)
    temporal_strides: list[int] = field(default_factory=list)
    upsample: str = "nearest"             # decoder: nearest (+ conv; images) | transposed (audio)
    num_res_blocks: int = 1
    mid_attention: bool = False
    latent_dim: int = 32                  # d
    codebook_size: int = 512              # K
    code_maps: int = 10                   # T: code maps per image, one per quantizer step
    schedule: str = "pow"                 # sin | linear | pow
    phi: float = 0.75                     # pow schedule base
    step_weighting: bool = True           # gamma_t = a_t ("weight" in Table 2)
    shared_bias: bool = True              # shared conv bias ("bias" in Table 2)
    dead_code_after: int = 50             # revive codes unused for this many steps; 0 = off
    noise_scale: float = 1.0              # multiplies b_t; 1 = the paper (see README's ablation)
    latent_norm_affine: bool = True       # learnable gain/bias of the latent LayerNorm
    latent_gain_init: float = 1.0         # initial LayerNorm gain: the latent's scale vs the noise

    # Old key -> new key: `model.steps` sat beside `train.steps` (optimizer steps) in one YAML, so
    # it is refused naming `model.code_maps`; tokenizer.yaml files saved before are mapped on load.
    RENAMED: ClassVar[dict[str, str]] = {"steps": "code_maps"}

    SIZES: ClassVar[dict[str, dict]] = {
        # CPU tests and the quickstart: 64 px, f8 -> 8x8 codes.
        "tiny": dict(image_size=64, base_channels=32, channel_mult=[1, 2, 2, 4], num_res_blocks=1,
                     mid_attention=False, latent_dim=32, codebook_size=512),
        # The paper's setting: 256 px, f16 -> 16x16 codes, K = 4096, d = 32, T = 10 (VQGAN widths).
        "paper_f16": dict(image_size=256, base_channels=128, channel_mult=[1, 1, 2, 2, 4],
                          num_res_blocks=2, mid_attention=True, latent_dim=32,
                          codebook_size=4096, code_maps=10),
        # Audio, CPU tests: 16 kHz, strides 4x4x4x5 = 320 samples per code (50 codes/s).
        "audio_tiny": dict(modality="audio", in_channels=1, sample_rate=16000, clip_samples=8000,
                           base_channels=16, channel_mult=[1, 2, 2, 4, 4], strides=[4, 4, 4, 5],
                           upsample="transposed",
                           num_res_blocks=1, mid_attention=False, latent_dim=8,
                           codebook_size=256, code_maps=4),
        # Audio on one GPU: 2 s clips at 16 kHz, 50 codes/s, K = 1024, T = 8.
        "audio_16k": dict(modality="audio", in_channels=1, sample_rate=16000, clip_samples=32000,
                          base_channels=32, channel_mult=[1, 2, 4, 8, 8], strides=[4, 4, 4, 5],
                          upsample="transposed",
                          num_res_blocks=2, mid_attention=False, latent_dim=8,
                          codebook_size=1024, code_maps=8),
        # Video, CPU tests: 8 frames at 32 px, strides (1,2,2) then (2,2,2): grid (4, 8, 8).
        "video_tiny": dict(modality="video", in_channels=3, num_frames=8, image_size=32,
                           base_channels=16, channel_mult=[1, 2, 2], strides=[2, 2],
                           temporal_strides=[1, 2], num_res_blocks=1, mid_attention=False,
                           latent_dim=8, codebook_size=256, code_maps=4),
        # Video on one GPU: 8 frames at 64 px, f8 in space and 2 in time: grid (4, 8, 8).
        "video_64": dict(modality="video", in_channels=3, num_frames=8, image_size=64,
                         base_channels=32, channel_mult=[1, 2, 2, 4], strides=[2, 2, 2],
                         temporal_strides=[1, 1, 2], num_res_blocks=1, mid_attention=False,
                         latent_dim=16, codebook_size=1024, code_maps=8),
    }

    @classmethod
    def from_size(cls, name: str, **overrides) -> "RDPMTokenizerConfig":
        if name not in cls.SIZES:
            raise ConfigError(f"unknown tokenizer size {name!r}; choose one of {sorted(cls.SIZES)}")
        return cls(**{"size": name, **cls.SIZES[name], **overrides})

    @property
    def dims(self) -> int:
        """Rank of the code grid: 2 for images, 1 for audio, 3 for video."""
        return {"audio": 1, "video": 3}.get(self.modality, 2)

    @property
    def spatial_strides(self) -> tuple[int, ...]:
        """Per level transition: the stride of every axis of images and audio, of H and W of video."""
        return level_strides(tuple(self.channel_mult), tuple(self.strides))

    @property
    def temporal_strides_per_level(self) -> tuple[int, ...]:
        """Video: the time axis's stride per level transition ([] = 1 each)."""
        if not self.temporal_strides:
            return (1,) * (len(self.channel_mult) - 1)
        return level_strides(tuple(self.channel_mult), tuple(self.temporal_strides))

    @property
    def level_strides(self) -> tuple:
        """What the autoencoder takes: ints for images and audio, (t, h, w) tuples for video."""
        if self.modality != "video":
            return self.spatial_strides
        return tuple((t, s, s) for t, s in zip(self.temporal_strides_per_level,
                                               self.spatial_strides))

    @property
    def downsample(self) -> int:
        """Input positions per code: pixels per side for images and video, samples for audio."""
        return math.prod(self.spatial_strides)

    @property
    def temporal_downsample(self) -> int:
        """Video: frames per code along time (1 for images and audio)."""
        return math.prod(self.temporal_strides_per_level) if self.modality == "video" else 1

    @property
    def grid(self) -> tuple[int, ...]:
        if self.modality == "audio":
            return (self.clip_samples // self.downsample,)
        side = self.image_size // self.downsample
        if self.modality == "video":
            return self.num_frames // self.temporal_downsample, side, side
        return side, side

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample without the batch axis: (C, H, W), (1, clip_samples) or (C, F, H, W)."""
        if self.modality == "audio":
            return (self.in_channels, self.clip_samples)
        if self.modality == "video":
            return (self.in_channels, self.num_frames, self.image_size, self.image_size)
        return (self.in_channels, self.image_size, self.image_size)

    def code_rate(self) -> dict[str, float]:
        """Audio: T code maps x codes/s, each code log2(K) bits. Video: the same per clip."""
        if self.modality == "video":
            codes_per_clip = math.prod(self.grid)
            tokens_per_clip = self.code_maps * codes_per_clip
            return {"codes_per_clip": codes_per_clip, "tokens_per_clip": tokens_per_clip,
                    "tokens_per_frame": tokens_per_clip / self.num_frames,
                    "bits_per_clip": tokens_per_clip * math.log2(self.codebook_size)}
        if self.modality != "audio":
            raise ValueError(f"code_rate is for audio and video tokenizers; this one is "
                             f"model.modality={self.modality!r}")
        codes_per_second = self.sample_rate / self.downsample
        tokens_per_second = self.code_maps * codes_per_second
        return {"codes_per_second": codes_per_second, "tokens_per_second": tokens_per_second,
                "bits_per_second": tokens_per_second * math.log2(self.codebook_size)}

    def validate(self, prefix: str = "model") -> None:
        if self.modality not in MODALITIES:
            raise ConfigError(f"{prefix}.modality={self.modality!r}: choose one of {MODALITIES}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{prefix}.schedule={self.schedule!r}: choose one of {SCHEDULES}")
        if self.upsample not in UPSAMPLING:
            raise ConfigError(f"{prefix}.upsample={self.upsample!r}: choose one of {UPSAMPLING}")
        try:
            strides = self.spatial_strides
        except ValueError as err:
            raise ConfigError(f"{prefix}.strides: {err}") from err
        if self.modality in ("image", "video") and self.image_size % self.downsample:
            raise ConfigError(f"{prefix}.image_size={self.image_size} is not divisible by the "
                              f"downsampling factor {self.downsample} of {prefix}.channel_mult")
        if self.modality == "audio":
            self._validate_audio(prefix, strides)
        if self.modality == "video":
            self._validate_video(prefix)
        if not 0.0 <= self.noise_scale <= 1.0:
            raise ConfigError(f"{prefix}.noise_scale={self.noise_scale}: must be in [0, 1]")
        if self.latent_gain_init <= 0:
            raise ConfigError(f"{prefix}.latent_gain_init={self.latent_gain_init}: must be > 0")
        for key in ("code_maps", "codebook_size", "latent_dim", "base_channels", "image_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key} must be >= 1, got {getattr(self, key)}")
        if self.codebook_size > 65536:
            raise ConfigError(f"{prefix}.codebook_size={self.codebook_size}: codes are stored "
                              "as uint16, so at most 65536")
        # GroupNorm uses min(32, width) groups, so a level 32 or wider must be a multiple of 32
        # (torch's own error names neither key nor level).
        for mult in self.channel_mult:
            width = self.base_channels * mult
            if width > 32 and width % 32:
                raise ConfigError(f"{prefix}.base_channels={self.base_channels}: level width "
                                  f"{self.base_channels} x {mult} = {width} of {prefix}.channel_mult"
                                  " is not a multiple of 32 (GroupNorm groups); use 16, 32, 64, ...")

    def _validate_audio(self, prefix: str, strides: tuple[int, ...]) -> None:
        if self.in_channels != 1:
            raise ConfigError(f"{prefix}.in_channels={self.in_channels}: audio is mono, set 1")
        if not 8000 <= self.sample_rate <= 48000:
            raise ConfigError(f"{prefix}.sample_rate={self.sample_rate}: must be in 8000..48000")
        if self.clip_samples < 1 or self.clip_samples % self.downsample:
            raise ConfigError(f"{prefix}.clip_samples={self.clip_samples} is not a positive multiple "
                              f"of the total stride {self.downsample} of {prefix}.strides="
                              f"{list(strides)}")


    def _validate_video(self, prefix: str) -> None:
        if self.in_channels != 3:
            raise ConfigError(f"{prefix}.in_channels={self.in_channels}: video frames are RGB, set 3")
        try:
            temporal = self.temporal_strides_per_level
        except ValueError as err:
            raise ConfigError(f"{prefix}.temporal_strides: {err}") from err
        if self.num_frames < 1 or self.num_frames % self.temporal_downsample:
            raise ConfigError(f"{prefix}.num_frames={self.num_frames} is not a positive multiple "
                              f"of the temporal downsampling {self.temporal_downsample} of "
                              f"{prefix}.temporal_strides={list(temporal)}")


def build_quantizer(cfg: RDPMTokenizerConfig, dead_code_after: int = 0) -> RDPMQuantizer:
    """The quantizer of a tokenizer config (also the frozen copy inside the unified model)."""
    return RDPMQuantizer(cfg.codebook_size, cfg.latent_dim, cfg.code_maps, cfg.schedule, cfg.phi,
                         cfg.step_weighting, cfg.shared_bias, spatial_rank=cfg.dims,
                         dead_code_after=dead_code_after, noise_scale=cfg.noise_scale)


class RDPMTokenizer(nn.Module):
    def __init__(self, cfg: RDPMTokenizerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        mult, dims, strides = tuple(cfg.channel_mult), cfg.dims, cfg.level_strides
        self.encoder = Encoder(cfg.in_channels, cfg.base_channels, mult, cfg.num_res_blocks,
                               cfg.latent_dim, cfg.mid_attention, cfg.latent_norm_affine,
                               cfg.latent_gain_init, dims=dims, strides=strides)
        self.quantizer = build_quantizer(cfg, dead_code_after=cfg.dead_code_after)
        self.decoder = Decoder(cfg.in_channels, cfg.base_channels, mult, cfg.num_res_blocks,
                               cfg.latent_dim, cfg.mid_attention, dims=dims, strides=strides,
                               upsample=cfg.upsample)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise unless `images` is a batch of this tokenizer's input (images or waveforms)."""
        shape = self.cfg.input_shape
        if images.dim() == 1 + len(shape) and tuple(images.shape[1:]) == shape:
            return
        if self.cfg.modality == "video":
            c, f, s = shape[0], shape[1], shape[2]
            raise ValueError(f"tokenizer expects clips (B, {c}, {f}, {s}, {s}) in [-1, 1] (channels "
                             f"before frames), got {tuple(images.shape)}; set model.num_frames={f} "
                             f"and model.image_size={s}")
        if self.cfg.modality == "audio":
            raise ValueError(f"tokenizer expects mono waveforms (B, 1, {shape[1]}) in [-1, 1], got "
                             f"{tuple(images.shape)}; crop or pad to model.clip_samples={shape[1]}")
        c, s = self.cfg.in_channels, self.cfg.image_size
        raise ValueError(f"tokenizer expects images (B, {c}, {s}, {s}) in [-1, 1], got "
                         f"{tuple(images.shape)}; resize to model.image_size={s}")

    def quantize(self, images: torch.Tensor, seeds=None, noise=None) -> QuantizerOutput:
        self.check_images(images)
        return self.quantizer(self.encoder(images), seeds=seeds, noise=noise)

    def forward(self, images: torch.Tensor, seeds=None, noise=None
                ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: (reconstruction, quantizer output)."""
        q = self.quantize(images, seeds=seeds, noise=noise)
        return self.decoder(q.latent), q

    @torch.no_grad()
    def encode(self, images: torch.Tensor, seeds) -> torch.Tensor:
        return self.quantize(images, seeds=seeds).codes

    def codes_to_latent(self, codes: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        self.check_codes(codes)
        return self.quantizer.codes_to_latent(codes, upto)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.codes_to_latent(codes))

    def check_codes(self, codes: torch.Tensor) -> None:
        grid = self.cfg.grid
        if (codes.dim() != 2 + len(grid) or tuple(codes.shape[2:]) != grid
                or codes.shape[1] > self.cfg.code_maps):
            raise ValueError(f"codes must be (B, T<={self.cfg.code_maps}, "
                             f"{', '.join(map(str, grid))}), got {tuple(codes.shape)}")


WEIGHTS_FILE, CONFIG_FILE = "tokenizer.safetensors", "tokenizer.yaml"


@dataclass
class _TokenizerFile:  # the YAML written beside the weights
    model: RDPMTokenizerConfig = field(default_factory=RDPMTokenizerConfig)


def save_tokenizer(model: RDPMTokenizer, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "unimodal-rdpm-tokenizer"})
    save_config(_TokenizerFile(model.cfg), folder / CONFIG_FILE)


def _check_tokenizer_folder(folder: Path) -> None:
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"tokenizer checkpoint {folder} has no {name}; pass the folder "
                                    "written by tokenizers/train_rdpm.py (<out_dir>/tokenizer)")


def load_tokenizer_config(folder: str | Path) -> RDPMTokenizerConfig:
    """The saved tokenizer's config alone (no weights): K, T, grid, latent width."""
    folder = Path(folder)
    _check_tokenizer_folder(folder)
    # upgrade_renamed: a folder saved before `steps` became `code_maps` still loads.
    return load_config(_TokenizerFile, folder / CONFIG_FILE, upgrade_renamed=True).model


def require_image_tokenizer(tokenizer: RDPMTokenizer, folder: str | Path, why: str) -> None:
    """Refuse an audio or video tokenizer where only images are handled yet, naming both."""
    modality = tokenizer.cfg.modality
    if modality != "image":
        article = "an" if modality[0] in "aeiou" else "a"
        raise ConfigError(f"tokenizer={folder} is {article} {modality} tokenizer; {why}")


def load_tokenizer(folder: str | Path, device: str | torch.device = "cpu") -> RDPMTokenizer:
    folder = Path(folder)
    cfg = load_tokenizer_config(folder)
    model = RDPMTokenizer(cfg)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.to(device).eval()


def check_same_codes(base: RDPMTokenizer, other: RDPMTokenizer, other_name: str,
                     parts: tuple[str, ...] = ("encoder", "quantizer")) -> None:
    """Raise unless `other` gives codes the meaning `base` gives them: the same config and
    bit-equal weights in `parts` (a decoder fine-tune, `train.train_only=decoder`, keeps both).
    Decoding needs only the quantizer (codes -> latent); encoding also needs the encoder."""
    ours, theirs = describe(base.cfg), describe(other.cfg)
    differ = sorted(k for k in ours if ours[k] != theirs.get(k))
    if differ:
        raise ValueError(f"{other_name}: its tokenizer config differs in "
                         + ", ".join(f"{k} ({theirs.get(k)!r} there, {ours[k]!r} here)"
                                     for k in differ))
    mine, yours = dict(base.named_parameters()), dict(other.named_parameters())
    for key in mine:  # parameters only: buffers such as dead-code counters do not change codes
        if key.split(".")[0] in parts and not torch.equal(mine[key].cpu(), yours[key].cpu()):
            raise ValueError(f"{other_name}: its weight {key} differs, so its codes mean something "
                             "else; only a decoder fine-tuned on frozen codes "
                             "(train.train_only=decoder) can replace this decoder")


def describe(cfg: RDPMTokenizerConfig) -> dict:
    return {**asdict(cfg), "downsample": cfg.downsample, "grid": list(cfg.grid)}
