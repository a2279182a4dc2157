"""Image files (unimodal/images.py): [-1, 1] tensors to uint8 with the documented rounding and
clamping, PNGs that read back pixel for pixel, and grids laid out by hand-computed offsets
(2-pixel white padding, originals above their reconstructions)."""

import numpy as np
import torch
from PIL import Image

from unimodal.images import (save_comparison_grid, save_grid, save_png, tensor_to_pil, to_uint8,
                             to_unit_range)


def test_unit_range_and_uint8_rounding_and_clamping():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    assert to_unit_range(x).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    assert to_unit_range(x).dtype == torch.float32
    assert to_uint8(x).tolist() == [0, 0, 128, 191, 255, 255]        # 127.5 and 191.25 rounded
    assert to_uint8(torch.tensor([-1 + 2 * 0.4 / 255])).tolist() == [0]
    assert to_uint8(torch.tensor([-1 + 2 * 0.6 / 255])).tolist() == [1]


def test_png_round_trip(tmp_path):
    torch.manual_seed(0)
    image = torch.rand(3, 5, 7) * 2 - 1
    pil = tensor_to_pil(image)
    assert pil.mode == "RGB" and pil.size == (7, 5)                   # width x height
    save_png(image, tmp_path / "a.png")
    read = np.asarray(Image.open(tmp_path / "a.png"))
    assert read.shape == (5, 7, 3)
    assert np.array_equal(read, to_uint8(image[None])[0].permute(1, 2, 0).numpy())


def test_comparison_grid_puts_reconstructions_under_their_originals(tmp_path):
    originals = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    recon = -originals
    save_comparison_grid(originals, recon, tmp_path / "g.png")
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    # 3 columns and 2 rows of 4 px tiles with 2 px padding around each: 2 + 3 * (4 + 2) wide
    assert grid.shape == (2 + 2 * 6, 2 + 3 * 6, 3)
    for row, images in enumerate((originals, recon)):
        for col, image in enumerate(images):
            y, x = 2 + row * 6, 2 + col * 6
            assert (grid[y:y + 4, x:x + 4] == to_uint8(image[None])[0, 0, 0, 0].item()).all()
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()      # white padding
    save_grid(torch.cat([originals, recon]), tmp_path / "wide.png", nrow=6)
    assert np.asarray(Image.open(tmp_path / "wide.png")).shape == (2 + 6, 2 + 6 * 6, 3)
