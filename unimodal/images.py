"""Image files: tensors in [-1, 1] to PNG files and grids (torchvision's make_grid does the layout)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> uint8 with the same layout (the rounding used for PNGs)."""
    return (to_unit_range(images) * 255).round().to(torch.uint8)


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
