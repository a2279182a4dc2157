"""A small shapes classifier, trained once and saved, whose features give a Fréchet distance on shapes.

The metric is "FD (shapes-classifier features)": the Fréchet distance between Gaussians fitted to
this classifier's 128-d feature layer on generated images and on held-out shapes renders. It is
not FID (FID means Inception-v3 pool features; `unimodal.metrics.generation` computes that when
Inception weights are given by path), and its numbers are comparable only between runs scored with
the same classifier file (its sha256 goes into every report).

Design choices, one line each:
- Input: uint8 RGB at any size, resized (bilinear, antialiased) to `image_size` (64), scaled to [-1, 1].
- Trunk: blocks of a stride-2 and a plain 3x3 conv with SiLU, 64 px down to 4 px (no normalisation
  layers: on a CPU they cost 6x the convs), then flattened, not pooled, into the feature layer,
  so where an object sits stays in the features.
- Heads, the attributes a render carries: `objects` (28 logits: which colour x shape pairs are in
  the image, multi-label, so colour is bound to shape), `count` (1-3 objects), `position` (the
  (x, y) centre of each of the 7 colours, masked where absent), `class` (the primary object's
  class id, 28-way); the loss is their sum.
- Training data: shapes scenes `data_seed`, indices `train_offset`.. in order (the stream is already
  random); init from `seed`; deterministic on CPU. Held-out accuracy on scenes `heldout_offset`..
- Saved as a folder: `weights.safetensors` (tensors only, nothing unpickled on load) and
  `classifier.json` (architecture, training settings, held-out accuracy, seconds, weights sha256).
- The distance itself is `FidStatistics` / `fid_from_statistics` of `unimodal.metrics.generation`
  (torch-fidelity's Fréchet distance on float64 mean and covariance); nothing is reimplemented.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from unimodal.checkpointing import atomic_folder
from unimodal.config import warmup_cosine
from unimodal.data.shapes import COLORS, NUM_CLASSES, ShapesDataset, class_id_for, render_sample
from unimodal.metrics.generation import FidStatistics, fid_from_statistics, file_sha256

METRIC_NAME = "FD (shapes-classifier features)"
WEIGHTS_FILE, RECORD_FILE = "weights.safetensors", "classifier.json"
MAX_OBJECTS = 3
_COLOR_NAMES = tuple(COLORS)
HEADS = {"objects": NUM_CLASSES, "count": MAX_OBJECTS, "position": 2 * len(COLORS), "class": NUM_CLASSES}


@dataclass
class ShapesClassifierConfig:
    image_size: int = 64                                                # inputs are resized to this side
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])  # one stride-2 conv block each
    feature_dim: int = 128                                              # the layer the FD uses

    def validate(self) -> None:
        final = self.image_size >> len(self.channels)
        if self.image_size < 16 or final << len(self.channels) != self.image_size or final < 1:
            raise ValueError(f"image_size={self.image_size} must be >= 16 and divisible by "
                             f"2^{len(self.channels)} (one halving per entry of channels)")
        if self.feature_dim < 2 or not self.channels or min(self.channels) < 8:
            raise ValueError(f"feature_dim={self.feature_dim} (>= 2) and channels={self.channels} "
                             "(non-empty, each >= 8)")


@dataclass
class ClassifierTrainingConfig:
    steps: int = 3000                 # optimizer steps
    batch_size: int = 128             # renders per step
    lr: float = 2e-3                  # AdamW peak lr; warm-up then cosine to lr/10
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 0                     # weight init
    data_seed: int = 0                # the shapes stream the training and held-out scenes come from
    train_offset: int = 0             # first training scene
    heldout_offset: int = 2_000_000   # first held-out scene (not the FD reference's 1_000_000..)
    heldout_images: int = 1000        # held-out scenes for the accuracy in classifier.json
    num_workers: int = 0              # DataLoader workers rendering scenes
    log_every: int = 50               # steps between loss readouts (the only host syncs)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "heldout_images", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError(f"lr={self.lr} (> 0), weight_decay={self.weight_decay}, warmup_steps="
                             f"{self.warmup_steps}, num_workers={self.num_workers} (>= 0)")


# -------------------------------------------------------------------------------------------- model
class ShapesClassifier(nn.Module):
    def __init__(self, cfg: ShapesClassifierConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        blocks, c_in = [], 3
        for c in cfg.channels:
            blocks += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_in = c
        self.trunk = nn.Sequential(*blocks)
        side = cfg.image_size >> len(cfg.channels)
        self.feature = nn.Linear(c_in * (side * side + 1), cfg.feature_dim)
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.feature_dim, n) for name, n in HEADS.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, image_size, image_size) in [-1, 1] -> (N, feature_dim)."""
        h = self.trunk(x)
        return F.silu(self.feature(torch.cat([h.flatten(1), h.amax((2, 3))], 1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}


def build_classifier(cfg: ShapesClassifierConfig | None = None) -> ShapesClassifier:
    return ShapesClassifier(cfg or ShapesClassifierConfig())


def to_model_input(images, image_size: int) -> torch.Tensor:
    """uint8 images (N, H, W, 3) or (N, 3, H, W), numpy or torch -> float (N, 3, S, S) in [-1, 1]."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ValueError(f"expected uint8 RGB images (N, H, W, 3) or (N, 3, H, W), got {x.dtype} "
                         f"{tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(127.5).sub_(1.0)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.contiguous()


# --------------------------------------------------------------------------------------------- data
def targets_for(objects) -> dict[str, torch.Tensor]:
    """The heads' targets for one scene's objects (objects[0] is the primary one)."""
    present = torch.zeros(NUM_CLASSES)
    position = torch.zeros(2 * len(COLORS))
    position_mask = torch.zeros(2 * len(COLORS))
    for obj in objects:
        present[class_id_for(obj.color, obj.shape)] = 1.0
        k = 2 * _COLOR_NAMES.index(obj.color)
        position[k:k + 2] = torch.tensor(obj.center)
        position_mask[k:k + 2] = 1.0
    return {"objects": present, "count": torch.tensor(len(objects) - 1),
            "position": position, "position_mask": position_mask,
            "class": torch.tensor(class_id_for(objects[0].color, objects[0].shape))}


class ShapesTargets(Dataset):
    """ShapesDataset scenes as (uint8 (3, H, W) image, targets)."""

    def __init__(self, scenes: ShapesDataset):
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        sample = self.scenes.sample(i)
        return torch.from_numpy(sample.image).permute(2, 0, 1).contiguous(), targets_for(sample.objects)


def heldout_renders(count: int, offset: int, data_seed: int = 0, image_size: int = 64) -> np.ndarray:
    """Scenes offset..offset+count-1 of the shapes stream `data_seed`, uint8 (count, S, S, 3)."""
    return np.stack([render_sample(offset + i, data_seed, image_size).image for i in range(count)])


# ------------------------------------------------------------------------------------- loss, metrics
def head_losses(out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mask = targets["position_mask"]
    squared = (out["position"] - targets["position"]).square() * mask
    return {"objects": F.binary_cross_entropy_with_logits(out["objects"], targets["objects"]),
            "count": F.cross_entropy(out["count"], targets["count"]),
            "position": squared.sum() / mask.sum().clamp(min=1) * 10.0,  # errors ~0.1 -> loss ~0.1
            "class": F.cross_entropy(out["class"], targets["class"])}


@torch.no_grad()
def evaluate_classifier(model: ShapesClassifier, scenes: ShapesDataset, batch_size: int = 256,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """Held-out accuracy per head: `objects` = the exact set of colour x shape pairs, `colors` =
    the exact set of colours (from the same head), `count`, `class`; `position_error` = mean |predicted - true| centre coordinate (image fractions)."""
    model.eval()
    hits = {"objects": 0.0, "colors": 0.0, "count": 0.0, "class": 0.0}
    position_error, position_count, n = 0.0, 0.0, 0
    for images, t in DataLoader(ShapesTargets(scenes), batch_size=batch_size):
        out = model(to_model_input(images, model.cfg.image_size).to(device))
        t = {k: v.to(device) for k, v in t.items()}
        hits["objects"] += ((out["objects"] > 0).float() == t["objects"]).all(1).sum().item()
        colors = out["objects"].unflatten(1, (len(COLORS), -1)).amax(2) > 0  # any shape of colour c
        hits["colors"] += (colors == t["objects"].unflatten(1, (len(COLORS), -1)).amax(2).bool()).all(1).sum().item()
        hits["count"] += (out["count"].argmax(1) == t["count"]).sum().item()
        hits["class"] += (out["class"].argmax(1) == t["class"]).sum().item()
        position_error += ((out["position"] - t["position"]).abs() * t["position_mask"]).sum().item()
        position_count += t["position_mask"].sum().item()
        n += images.shape[0]
    return {**{f"{k}_accuracy": v / n for k, v in hits.items()},
            "position_error": position_error / max(position_count, 1.0), "heldout_images": n}


# ---------------------------------------------------------------------------------------- training
def train_classifier(cfg: ClassifierTrainingConfig, model_cfg: ShapesClassifierConfig | None = None,
                     device: torch.device | str = "cpu",
                     log: Callable[[str], None] = print) -> tuple[ShapesClassifier, dict]:
    """Train on shapes renders; returns the model (eval mode) and its record (settings, held-out
    accuracy, seconds, img/s) as saved in classifier.json."""
    cfg.validate()
    model_cfg = model_cfg or ShapesClassifierConfig()
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = build_classifier(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.steps, 0.1))
    scenes = ShapesDataset(cfg.steps * cfg.batch_size, model_cfg.image_size, cfg.data_seed,
                           cfg.train_offset)
    loader = DataLoader(ShapesTargets(scenes), batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda")
    model.train()
    start = time.perf_counter()
    bar = tqdm(loader, total=cfg.steps, desc="shapes classifier", unit="step", dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        x = to_model_input(images.to(device, non_blocking=True), model_cfg.image_size)
        targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
        losses = head_losses(model(x), targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            seen = (step + 1) * cfg.batch_size
            bar.set_postfix(loss=f"{loss.item():.3f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    bar.close()
    heldout = ShapesDataset(cfg.heldout_images, model_cfg.image_size, cfg.data_seed, cfg.heldout_offset)
    accuracy = evaluate_classifier(model, heldout, device=device)
    record = {"metric": METRIC_NAME, "model": asdict(model_cfg), "training": asdict(cfg),
              "heldout": accuracy, "train_seconds": seconds,
              "images_per_second": cfg.steps * cfg.batch_size / seconds, "device": str(device),
              "torch": torch.__version__}
    log(f"shapes classifier: {cfg.steps} steps in {seconds:.1f} s "
        f"({record['images_per_second']:.0f} img/s); held-out " +
        ", ".join(f"{k}={v:.3f}" for k, v in accuracy.items() if isinstance(v, float)))
    return model.eval(), record


# ------------------------------------------------------------------------------------- save / load
def save_classifier(model: ShapesClassifier, record: dict, folder: str | Path) -> dict:
    """Write <folder>/weights.safetensors and classifier.json (atomically); returns the record
    with the weights' sha256 added."""
    from safetensors.torch import save_file

    with atomic_folder(folder) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"metric": METRIC_NAME})
        record = {**record, "model": asdict(model.cfg), "weights_sha256": file_sha256(tmp / WEIGHTS_FILE)}
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_classifier(folder: str | Path, device: torch.device | str = "cpu") -> tuple[ShapesClassifier, dict]:
    """(model in eval mode, its classifier.json record) from a folder `save_classifier` wrote."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    hint = "train one with: python eval/train_shapes_classifier.py out=FOLDER"
    for name in (RECORD_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"shapes classifier {folder / name}: not found ({hint})")
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
        model = build_classifier(ShapesClassifierConfig(**record["model"]))
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"shapes classifier {folder}: {WEIGHTS_FILE} / {RECORD_FILE} do not make "
                         f"a classifier ({type(err).__name__}: {str(err)[:200]})") from None
    return model.to(device).eval(), record


# ----------------------------------------------------------------------------------- the distance
@torch.no_grad()
def features(model: ShapesClassifier, images, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (an array/tensor (N, H, W, 3) or (N, 3, H, W), or a Dataset of uint8 (3, H, W)
    tensors, e.g. `generation.image_folder_dataset`) -> float32 (N, feature_dim) on the CPU."""
    device = next(model.parameters()).device
    batches = (DataLoader(images, batch_size=batch_size) if isinstance(images, Dataset)
               else torch.as_tensor(images).split(batch_size))
    out = [model.features(to_model_input(b, model.cfg.image_size).to(device)).float().cpu()
           for b in batches]
    if not out:
        raise ValueError("no images to compute features of")
    return torch.cat(out)


def shapes_statistics(model: ShapesClassifier, images, batch_size: int = 256) -> FidStatistics:
    """Mean and covariance (float64) of the classifier features of `images` (as `features`)."""
    f = features(model, images, batch_size)
    if f.shape[0] < 2:
        raise ValueError(f"{METRIC_NAME} needs at least 2 images, got {f.shape[0]}")
    return FidStatistics.from_features(f)


def shapes_frechet_distance(model: ShapesClassifier, generated, reference,
                            batch_size: int = 256) -> float:
    """FD (shapes-classifier features) between `generated` images and `reference` (images, or
    `FidStatistics` from `shapes_statistics` with the same classifier)."""
    ref = reference if isinstance(reference, FidStatistics) else shapes_statistics(model, reference, batch_size)
    if ref.mu.shape != (model.cfg.feature_dim,):
        raise ValueError(f"reference statistics have {ref.mu.shape[0]} features; this classifier's "
                         f"feature layer has {model.cfg.feature_dim}")
    return fid_from_statistics(shapes_statistics(model, generated, batch_size), ref)
