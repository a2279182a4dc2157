"""The tokenizer training config: model, losses, data, optimizer and loop, validated before any
model is built (tokenizers/train_rdpm.py loads it; `unimodal.tokenizer.training` runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from unimodal.config import ConfigError, check_optimizer
from unimodal.data.moving_shapes import MAX_FRAMES, MIN_FRAMES
from unimodal.data.shapes import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
# data.*: below the tokenizer package, so that encoding (tokenizers/encode.py) reads it too.
from unimodal.data.tokenizer_data import VIDEO_SOURCES, TokenizerDataConfig  # noqa: F401
from unimodal.tokenizer.losses import TokenizerLossConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig

@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])  # the paper's Adam betas
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0                # 0 = off
    schedule: str = "constant"            # constant (the paper) | cosine (to lr * min_lr_ratio at train.steps)
    min_lr_ratio: float = 0.1             # the cosine schedule's last lr, as a fraction of lr


@dataclass
class TokenizerRunConfig:
    out_dir: str = "runs/rdpm_tiny"
    steps: int = 1000
    batch_size: int = 32                  # per device
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_images: int = 64                 # held-out images (or audio clips) for the final metrics
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda
    precision: str = "fp32"               # fp32 | bf16 (autocast on CUDA)
    threads: int = 0                      # torch CPU threads; 0 = torch's default
    max_minutes: float = 0.0              # stop training after this wall time (then save, evaluate); 0 = off
    max_nonfinite_steps: int = 5          # skipped updates (non-finite loss/gradients) in a row that stop
    allow_inexact_resume: bool = False    # webdataset sources: resume although the stream restarts
    overwrite: bool = False               # a fresh run may replace another run's files in out_dir
    peak_tflops: float = 989.0            # per device, for MFU (H100/H200 dense bf16)
    diagnostics_every: int = 100          # per-step quantizer diagnostics in log.jsonl; 0 = off
    diagnostics_images: int = 32          # images of the batch they use
    init_from: str = ""                   # a tokenizer folder (<out_dir>/tokenizer) to start from
    train_only: str = "all"               # all | decoder: fine-tune the decoder of `init_from` on
                                          # frozen codes (encoder and quantizer keep their weights,
                                          # so shards encoded with it stay valid)


@dataclass
class TokenizerTrainConfig:
    """One tokenizer run (tokenizers/train_rdpm.py): the RDPM tokenizer, its losses, the images
    or audio clips, Adam (warm-up, then a constant or cosine lr), and the loop."""

    model: RDPMTokenizerConfig = field(default_factory=RDPMTokenizerConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TokenizerRunConfig = field(default_factory=TokenizerRunConfig)

    def validate(self) -> None:
        self.model.validate("model")
        self.loss.validate("loss")
        check_optimizer(self.optim, "optim")
        if self.optim.schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule={self.optim.schedule!r}: choose constant or cosine")
        if not 0 <= self.optim.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio={self.optim.min_lr_ratio}: must be in [0, 1]")
        if self.train.max_nonfinite_steps < 1:
            raise ConfigError(f"train.max_nonfinite_steps={self.train.max_nonfinite_steps}: must be >= 1")
        if self.train.keep_checkpoints < 0:
            raise ConfigError(f"train.keep_checkpoints={self.train.keep_checkpoints}: must be >= 0")
        if self.train.max_minutes < 0:
            raise ConfigError(f"train.max_minutes={self.train.max_minutes}: must be >= 0 (0 = off)")
        if self.model.modality == "audio":
            self.data.validate_audio()
            self._validate_audio_losses()
        elif self.model.modality == "video":
            self.data.validate_video()
            self._validate_video_clips()
            self._validate_video_losses()
        else:
            self._validate_image_data_and_losses()
        if self.train.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision={self.train.precision!r}: choose fp32 or bf16")
        for key in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1")
        if self.train.train_only not in ("all", "decoder"):
            raise ConfigError(f"train.train_only={self.train.train_only!r}: choose all or decoder")
        if self.train.train_only == "decoder" and not self.train.init_from:
            raise ConfigError("train.train_only=decoder needs train.init_from: the tokenizer "
                              "folder whose codes the decoder learns to decode")
        for key in ("diagnostics_every", "diagnostics_images"):
            if getattr(self.train, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0")

    def _validate_image_data_and_losses(self) -> None:
        try:
            self.data.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if self.data.image_size != self.model.image_size:
            raise ConfigError(f"data.image_size={self.data.image_size} differs from "
                              f"model.image_size={self.model.image_size}")
        if self.loss.stft_weight > 0:
            raise ConfigError(f"loss.stft_weight={self.loss.stft_weight}: the STFT loss is for "
                              "model.modality=audio; set 0 for images")

    def _validate_audio_losses(self) -> None:
        if self.loss.perceptual_weights_path:
            raise ConfigError(f"loss.perceptual_weights_path={self.loss.perceptual_weights_path!r}: "
                              "LPIPS is an image network; set '' for model.modality=audio")

    def _validate_video_losses(self) -> None:
        """L1/L2 per frame only: LPIPS and the PatchGAN discriminator are image (2-D) networks."""
        loss = self.loss
        if loss.perceptual_weights_path:
            raise ConfigError(f"loss.perceptual_weights_path={loss.perceptual_weights_path!r}: "
                              "LPIPS is an image network; set '' for model.modality=video")
        if loss.gan_weight > 0 and loss.gan_start < self.train.steps:
            raise ConfigError(f"loss.gan_weight={loss.gan_weight} with loss.gan_start="
                              f"{loss.gan_start} < train.steps={self.train.steps}: the GAN loss is "
                              "image/audio only; set loss.gan_weight=0 for model.modality=video")
        if loss.stft_weight > 0:
            raise ConfigError(f"loss.stft_weight={loss.stft_weight}: the STFT loss is for "
                              "model.modality=audio; set 0 for video")

    def _validate_video_clips(self) -> None:
        """What the moving-shapes renderer draws (unimodal.data.moving_shapes)."""
        model = self.model
        if not MIN_FRAMES <= model.num_frames <= MAX_FRAMES:
            raise ConfigError(f"model.num_frames={model.num_frames}: data.source=moving_shapes "
                              f"renders {MIN_FRAMES}..{MAX_FRAMES} frames")
        if not MIN_IMAGE_SIZE <= model.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"model.image_size={model.image_size}: data.source=moving_shapes "
                              f"renders {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} px")
