"""Image files: tensors in [-1, 1] to PNG files and grids (torchvision's make_grid does the layout)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from unimodal.metrics.reconstruction import to_uint8


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(to_uint8(image[None])[0].permute(1, 2, 0).cpu().numpy())


def save_png(image: torch.Tensor, path: str | Path) -> None:
    tensor_to_pil(image).save(path)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    grid = make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    save_png(grid, path)


def save_comparison_grid(originals: torch.Tensor, reconstructions: torch.Tensor,
                         path: str | Path) -> None:
    """Originals on the top row, their reconstructions below."""
    n = originals.shape[0]
    save_grid(torch.cat([originals, reconstructions]), path, nrow=n)
