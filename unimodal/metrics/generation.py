"""Generation metrics through torch-fidelity: FID, Inception Score, precision and recall.

One pass of torch-fidelity's Inception (`inception-v3-compat`, the TF-2015 graph FID is defined
with) over the generated images gives the pool features (FID, precision/recall) and the logits
(IS); references are a folder of images, a statistics file, or the ADM reference batch.

Design choices, one line each:
- The Inception weights are a local file (`inception_weights=`); a missing one is an error that
  names the option, the file and where to get it. Nothing is downloaded.
- torch-fidelity's own functions compute every number (feature extractor, FID from (mu, sigma),
  IS over splits, k-NN precision/recall); we only feed them, so results match `calculate_metrics`.
- Precision/recall use the Inception pool features with k = 3, as the ADM evaluator (which
  LlamaGen and VAR report with) does, not torch-fidelity's default VGG16 (that would need a second
  weights file).
- ADM reference batch (`VIRTUAL_imagenet256_labeled.npz`): FID against its precomputed mu/sigma
  (what the ADM evaluator does), precision/recall against features of its `arr_0` images.
- A statistics-only reference (npz or torch-fidelity .pt with mu/sigma) gives FID; precision and
  recall need reference images and are reported as null with a note.
- Statistics are float64 (ADM's are); a reference of another feature size is an error.
- IS uses min(10, N) splits (ADM and torch-fidelity use 10 for 50K images).
- FID and precision/recall use the 2048-d pool features; `feature_layer` 64/192/768 exists only for
  smoke tests on small CPUs (a 2048-d FID costs seconds there) and is recorded in every report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from unimodal.checkpointing import load_torch_file
from unimodal.metrics.reconstruction import inception_weights_or_error

FEATURE_EXTRACTOR = "inception-v3-compat"
POOL_FEATURES, LOGITS = "2048", "logits_unbiased"
FEATURE_LAYERS = ("2048", "768", "192", "64")
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
ADM_REFERENCE_NOTE = ("ADM reference batches (e.g. VIRTUAL_imagenet256_labeled.npz) come from "
                      "openai/guided-diffusion's evaluations README")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")


def require_inception_weights(path: str | None, option: str = "inception_weights") -> str:
    """The path if it is a file; otherwise an error naming the option, the file and its source."""
    try:
        return inception_weights_or_error(path, option)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; download it once on a machine with network access: "
                                f"{INCEPTION_URL}") from None


# ------------------------------------------------------------------------------------------- inputs
class ImageArrayDataset(Dataset):
    """uint8 images (N, H, W, 3) or (N, 3, H, W) -> uint8 (3, H, W) tensors, torch-fidelity's input."""

    def __init__(self, images: np.ndarray, source: str = "array"):
        if images.dtype != np.uint8 or images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
            raise ValueError(f"{source}: expected uint8 images (N, H, W, 3), got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images, self.channels_last = images, images.shape[-1] == 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(self.images[i]))
        return image.permute(2, 0, 1).contiguous() if self.channels_last else image


def image_folder_dataset(folder: str | Path, recursive: bool = False, resize: int = 0) -> Dataset:
    """torch-fidelity's folder reader (png/jpg/jpeg, sorted); `resize` > 0: shorter side to
    `resize`, then a centre crop."""
    import torchvision
    from torch_fidelity.datasets import ImagesPathDataset, TransformPILtoRGBTensor
    from torch_fidelity.utils import glob_samples_paths

    files = glob_samples_paths(str(folder), recursive, ",".join(IMAGE_EXTENSIONS), verbose=False)
    if not files:
        raise FileNotFoundError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} images"
                                f"{' (searched recursively)' if recursive else ''}")
    transforms = torchvision.transforms
    steps = [transforms.Resize(resize), transforms.CenterCrop(resize)] if resize else []
    return ImagesPathDataset(files, transforms.Compose(steps + [TransformPILtoRGBTensor()]))


@dataclass
class FidStatistics:
    mu: np.ndarray      # (D,) float64
    sigma: np.ndarray   # (D, D) float64

    @classmethod
    def from_features(cls, features: torch.Tensor) -> "FidStatistics":
        from torch_fidelity.metric_fid import fid_features_to_statistics

        stats = fid_features_to_statistics(features.double().cpu())
        return cls(np.asarray(stats["mu"], np.float64), np.asarray(stats["sigma"], np.float64))

    def save(self, path: str | Path) -> None:
        """npz with `mu` and `sigma` (the layout ADM and pytorch-fid read)."""
        np.savez(path, mu=self.mu, sigma=self.sigma)


def fid_from_statistics(generated: FidStatistics, reference: FidStatistics) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    if generated.mu.shape != reference.mu.shape:
        raise ValueError(f"reference statistics have {reference.mu.shape[0]} features, ours "
                         f"{generated.mu.shape[0]} (Inception pool3 = 2048, the FID standard)")
    def as_dict(s: FidStatistics) -> dict:
        return {"mu": s.mu.astype(np.float64), "sigma": s.sigma.astype(np.float64)}

    return float(fid_statistics_to_metric(as_dict(generated), as_dict(reference), False)[KEY_METRIC_FID])


@dataclass
class Reference:
    path: str
    kind: str                              # folder | npz | statistics
    images: Dataset | None                 # uint8 CHW tensors, when the reference has images
    statistics: FidStatistics | None       # precomputed mu/sigma, when the file has them


def _statistics_from_mapping(data) -> FidStatistics | None:
    keys = set(data.keys())
    if {"mu", "sigma"} <= keys:
        return FidStatistics(np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64))
    return None


# torch-fidelity's statistics are numpy arrays saved with torch.save: rebuilding an ndarray needs
# these (array and dtype constructors; no other code runs).
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed core to _core
NUMPY_ARRAY_GLOBALS = [_NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype,
                       type(np.dtype(np.float64)), type(np.dtype(np.float32))]


def load_reference(path: str | Path, resize: int = 0) -> Reference:
    """A folder of images (searched recursively), an .npz (ADM batch: `arr_0` images and/or
    `mu`/`sigma`), or torch-fidelity statistics (.pt/.pth with `mu`/`sigma`)."""
    path = Path(path)
    if path.is_dir():
        return Reference(str(path), "folder", image_folder_dataset(path, True, resize), None)
    if not path.is_file():
        raise FileNotFoundError(f"reference={path}: not found (a folder of images, an ADM-style "
                                f".npz, or a statistics file; {ADM_REFERENCE_NOTE})")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:  # an object array would unpickle
                stats = _statistics_from_mapping(data)
                images = ImageArrayDataset(data["arr_0"], str(path)) if "arr_0" in data.files else None
        except ValueError as err:
            if "allow_pickle" not in str(err):
                raise
            raise ValueError(f"reference={path}: refused, it holds pickled Python objects "
                             "(object arrays); loading them could run code") from None
        if stats is None and images is None:
            raise ValueError(f"reference={path}: an .npz needs `arr_0` (uint8 NHWC images) or "
                             f"`mu` and `sigma`; it has {sorted(data.files)}")
        return Reference(str(path), "npz", images, stats)
    if path.suffix in (".pt", ".pth"):
        data = load_torch_file(path, "reference", allowed_globals=NUMPY_ARRAY_GLOBALS)
        stats = _statistics_from_mapping(data) if isinstance(data, dict) else None
        if stats is None:
            raise ValueError(f"reference={path}: expected a dict with `mu` and `sigma` "
                             "(torch-fidelity's statistics format)")
        return Reference(str(path), "statistics", None, stats)
    raise ValueError(f"reference={path}: unknown kind; give a folder, .npz, .pt or .pth")


# ----------------------------------------------------------------------------------------- features
class InceptionFeatures:
    """torch-fidelity's Inception from a local weights file: dataset -> {layer: (N, D)} for the
    requested feature layers (default the 2048-d pool) and the logits."""

    def __init__(self, weights_path: str, device: torch.device | str = "cpu", batch_size: int = 64,
                 num_workers: int = 0, option: str = "inception_weights",
                 layers: tuple[str, ...] = (POOL_FEATURES,)):
        from torch_fidelity.utils import create_feature_extractor

        unknown = set(layers) - set(FEATURE_LAYERS)
        if unknown:
            raise ValueError(f"feature layers {sorted(unknown)}: choose from {FEATURE_LAYERS}")
        self.layers = [*dict.fromkeys(layers), LOGITS]
        self.weights_path = require_inception_weights(weights_path, option)
        self.device = torch.device(device)
        self.batch_size, self.num_workers = batch_size, num_workers
        try:
            self.extractor = create_feature_extractor(
                FEATURE_EXTRACTOR, self.layers, cuda=False, verbose=False,
                feature_extractor_weights_path=self.weights_path).to(self.device)
        except (RuntimeError, KeyError, EOFError, ValueError) as err:
            raise ValueError(f"{option}={weights_path}: not torch-fidelity's Inception weights "
                             f"({type(err).__name__}: {str(err)[:200]})") from err

    @torch.no_grad()
    def __call__(self, dataset: Dataset, desc: str = "inception") -> dict[str, torch.Tensor]:
        loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        with tqdm(total=len(dataset), desc=desc, unit="img", dynamic_ncols=True) as bar:
            for batch in loader:
                out = self.extractor(batch.to(self.device, non_blocking=True))
                for name, value in self.extractor.convert_features_tuple_to_dict(out).items():
                    parts[name].append(value.float().cpu())
                bar.update(batch.shape[0])
        return {name: torch.cat(values) for name, values in parts.items()}


# ------------------------------------------------------------------------------------------ metrics
def metrics_from_features(generated: dict[str, torch.Tensor],
                          reference_features: dict[str, torch.Tensor] | None = None,
                          reference_statistics: FidStatistics | None = None,
                          isc_splits: int = 10, prc_neighborhood: int = 3,
                          prc_batch_size: int = 10000, device: torch.device | str = "cpu",
                          feature_layer: str = POOL_FEATURES) -> dict:
    """FID (against `reference_statistics` when given, else the reference features), IS of the
    generated logits, precision/recall against the reference features (None without them)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    pool = generated[feature_layer]
    n = pool.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 generated images for FID, got {n}")
    if reference_statistics is None:
        if reference_features is None:
            raise ValueError("a reference needs images or statistics")
        reference_statistics = FidStatistics.from_features(reference_features[feature_layer])
    isc = isc_features_to_metric(generated[LOGITS], splits=min(isc_splits, n), shuffle=True,
                                 rng_seed=2020)
    metrics = {"fid": fid_from_statistics(FidStatistics.from_features(pool), reference_statistics),
               "inception_score": isc[KEY_METRIC_ISC_MEAN],
               "inception_score_std": isc[KEY_METRIC_ISC_STD],
               "precision": None, "recall": None, "num_generated": n}
    if reference_features is not None:
        ref = reference_features[feature_layer]
        if min(n, ref.shape[0]) <= prc_neighborhood:
            raise ValueError(f"precision/recall need more than k = {prc_neighborhood} images per side")
        prc = prc_features_to_metric(pool.to(device), ref.to(device), prc_neighborhood=prc_neighborhood,
                                     prc_batch_size=prc_batch_size, save_cpu_ram=True, verbose=False)
        metrics.update(precision=float(prc["precision"]), recall=float(prc["recall"]),
                       num_reference_images=int(ref.shape[0]))
    return metrics


def generation_metrics(generated: str | Path | Dataset, reference: str | Path | Reference,
                       inception_weights: str, device: torch.device | str = "cpu",
                       batch_size: int = 64, num_workers: int = 0,
                       use_reference_statistics: bool = True, reference_resize: int = 0,
                       isc_splits: int = 10, prc_neighborhood: int = 3,
                       save_generated_statistics: str | Path | None = None,
                       feature_layer: str = POOL_FEATURES) -> dict:
    """FID, IS, precision and recall of `generated` (a folder of PNGs or a uint8 dataset)."""
    features = InceptionFeatures(inception_weights, device, batch_size, num_workers,
                                 layers=(feature_layer,))
    if not isinstance(reference, Reference):
        reference = load_reference(reference, reference_resize)
    gen_dataset = image_folder_dataset(generated) if isinstance(generated, (str, Path)) else generated
    gen = features(gen_dataset, "inception: generated")
    has_images = reference.images is not None
    use_stats = reference.statistics is not None and (use_reference_statistics or not has_images)
    ref_features = features(reference.images, "inception: reference") if has_images else None
    metrics = metrics_from_features(gen, ref_features, reference.statistics if use_stats else None,
                                    isc_splits, prc_neighborhood, device=device,
                                    feature_layer=feature_layer)
    metrics["fid_reference"] = ("precomputed mu/sigma in the reference file" if use_stats
                                else "features of the reference images")
    metrics["reference_kind"] = reference.kind
    if save_generated_statistics:
        FidStatistics.from_features(gen[feature_layer]).save(save_generated_statistics)
    return metrics


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_record(path: str) -> dict:
    """What a report says about a weights file: its name, size and sha256."""
    return {"file": os.path.basename(path), "path": str(path), "bytes": os.path.getsize(path),
            "sha256": file_sha256(path)}
