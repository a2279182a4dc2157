"""Video files (unimodal/data/video_files.py): GIF and MP4 round trips of moving-shapes clips, the
codec's loss bounded, odd sizes padded for yuv420p, bad frames and formats refused."""

import numpy as np
import pytest
import torch

from unimodal.data.moving_shapes import render_clip, render_scene, sample_scene
from unimodal.data.video_files import load_gif, load_mp4, save_gif, save_mp4, save_video


def _uint8(frames: torch.Tensor) -> np.ndarray:
    return ((frames + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()


def test_gif_round_trip(tmp_path):
    clip = render_clip(3, frames=8, image_size=64)
    path = save_gif(clip.frames, tmp_path / "clip.gif")
    frames = load_gif(path)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(float) - _uint8(clip.frames)).mean() < 4  # a 256-colour palette
    uint8_path = save_gif(render_scene(sample_scene(3, frames=16), 32), tmp_path / "uint8.gif")
    assert load_gif(uint8_path).shape == (16, 32, 32, 3)
    with pytest.raises(ValueError, match="uint8"):
        save_gif(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "bad.gif")


def test_mp4_round_trip_keeps_every_frame_and_its_colours(tmp_path):
    pytest.importorskip("av", reason="MP4 needs the video extra (PyAV)")
    clip = render_clip(5, frames=8, image_size=64)
    frames = load_mp4(save_mp4(clip.frames, tmp_path / "clip.mp4", fps=8))
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    error = np.abs(frames.astype(float) - _uint8(clip.frames))
    assert error.mean() < 6   # lossy, but every frame close to its original
    assert error.reshape(8, -1).mean(1).max() < 10
    # The motion survives: a frame is closer to its own original than to the clip's first frame.
    assert np.abs(frames[-1].astype(float) - _uint8(clip.frames)[0]).mean() > error[-1].mean()


def test_mp4_pads_odd_sizes_and_save_video_picks_the_format(tmp_path):
    pytest.importorskip("av", reason="MP4 needs the video extra (PyAV)")
    odd = render_scene(sample_scene(2, frames=4), 33)   # uint8 (4, 33, 33, 3)
    frames = load_mp4(save_video(odd, tmp_path / "odd.gif", "mp4"))
    assert (tmp_path / "odd.mp4").is_file() and frames.shape == (4, 34, 34, 3)
    assert np.abs(frames[:, :33, :33].astype(float) - odd).mean() < 8
    assert save_video(odd, tmp_path / "x.mp4", "gif").suffix == ".gif"
    with pytest.raises(ValueError, match="video_format='avi'"):
        save_video(odd, tmp_path / "x", "avi")
    with pytest.raises(ValueError, match="fps=0"):
        save_mp4(odd, tmp_path / "y.mp4", fps=0)
