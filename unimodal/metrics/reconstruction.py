"""Reconstruction metrics on images in [-1, 1]: PSNR and SSIM (torchmetrics), rFID (torch-fidelity).

PSNR and SSIM are computed per image on [0, 1] pixels (data range 1) and averaged, so a batch of
any size gives the same mean. rFID needs a local Inception weights file: nothing is downloaded.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import torch
from torchmetrics.functional.image import (peak_signal_noise_ratio,
                                           structural_similarity_index_measure)

from unimodal.images import to_uint8, to_unit_range


@torch.no_grad()
def psnr_per_image(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    a, b = to_unit_range(original), to_unit_range(reconstruction)
    return peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3))


@torch.no_grad()
def ssim_per_image(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    a, b = to_unit_range(original), to_unit_range(reconstruction)
    return structural_similarity_index_measure(b, a, data_range=1.0, reduction="none")


class ReconstructionMeter:
    """Running mean of PSNR/SSIM over batches."""

    def __init__(self):
        self.psnr_sum = self.ssim_sum = 0.0
        self.count = 0

    def update(self, original: torch.Tensor, reconstruction: torch.Tensor) -> None:
        self.psnr_sum += psnr_per_image(original, reconstruction).sum().item()
        self.ssim_sum += ssim_per_image(original, reconstruction).sum().item()
        self.count += original.shape[0]

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"psnr": self.psnr_sum / n, "ssim": self.ssim_sum / n, "images": self.count}


_SAFE_COPIES: dict[tuple[str, int, int], str] = {}


def inception_weights_or_error(path: str | None, option: str = "inception_weights") -> str:
    """Check the Inception weights file and return the path to hand torch-fidelity.

    torch-fidelity loads this file with `torch.load(weights_only=False)`, which would run code
    planted in a crafted file. So the file is loaded here with weights_only=True (tensors only),
    and torch-fidelity gets a copy written by this process from those tensors.
    """
    if not path:
        raise FileNotFoundError(
            f"{option} is required for FID: a local copy of torch-fidelity's Inception weights "
            "(weights-inception-2015-12-05-6726825d.pth, from the torch-fidelity GitHub releases); "
            "nothing is downloaded at run time")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option}={path}: file not found (expected torch-fidelity's "
                                "weights-inception-2015-12-05-6726825d.pth)")
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SAFE_COPIES:
        from unimodal.checkpointing import load_torch_file

        state = load_torch_file(path, option)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{option}={path}: expected a state dict of tensors "
                             "(torch-fidelity's weights-inception-2015-12-05-6726825d.pth)")
        folder = Path(tempfile.mkdtemp(prefix="unimodal-inception-"))
        atexit.register(shutil.rmtree, folder, True)
        torch.save(state, folder / "inception.pth")
        _SAFE_COPIES[key] = str(folder / "inception.pth")
    return _SAFE_COPIES[key]


def folder_fid(real_dir: str | Path, fake_dir: str | Path, inception_weights: str,
               cuda: bool = False, batch_size: int = 64) -> dict[str, float]:
    """FID between two folders of images, through torch-fidelity with a local Inception file."""
    import torch_fidelity

    metrics = torch_fidelity.calculate_metrics(
        input1=str(fake_dir), input2=str(real_dir), fid=True, cuda=cuda, batch_size=batch_size,
        feature_extractor_weights_path=inception_weights_or_error(inception_weights),
        verbose=False, save_cpu_ram=True)
    return {"fid": float(metrics["frechet_inception_distance"])}
