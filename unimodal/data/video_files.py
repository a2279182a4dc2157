"""Video clips to and from files: GIF (PIL, always there) and MP4 (PyAV, the `video` extra).

    save_gif(frames, "clip.gif");  save_mp4(frames, "clip.mp4", fps=8)
    load_gif("clip.gif") / load_mp4("clip.mp4") -> uint8 (F, H, W, 3)

Design choices, one line each:
- frames are what the video tokenizer and the moving-shapes set give, a float tensor (F, 3, H, W)
  in [-1, 1], or what a file holds, uint8 (F, H, W, 3); anything else is refused by shape.
- GIF: an adaptive 256-colour palette per frame, looping; PIL merges identical consecutive frames,
  so a static clip reads back with fewer frames.
- MP4: H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 part 2, which every FFmpeg build
  has; yuv420p, which players expect, so an odd height or width is padded by one edge row/column.
  Lossy: a read-back clip is close to, not equal to, what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

VIDEO_FORMATS = ("gif", "mp4")


def as_uint8_frames(frames) -> np.ndarray:
    """uint8 (F, H, W, 3) from a float tensor (F, 3, H, W) in [-1, 1] or uint8 (F, H, W, 3)."""
    if isinstance(frames, torch.Tensor):
        frames = ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
        return frames.permute(0, 2, 3, 1).numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (F, H, W, 3) or a float tensor (F, 3, H, W), "
                         f"got {frames.dtype} {frames.shape}")
    return frames


def save_gif(frames, path, frame_ms: int = 125) -> Path:
    """A looping GIF of `frames`, each shown `frame_ms` milliseconds."""
    images = [Image.fromarray(frame) for frame in as_uint8_frames(frames)]
    path = Path(path)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms,
                   loop=0)
    return path


def load_gif(path) -> np.ndarray:
    """uint8 (F, H, W, 3): the frames of a GIF, e.g. one `save_gif` wrote."""
    with Image.open(path) as gif:
        return np.stack([np.array(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)])


def _av():
    try:
        import av
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("MP4 files are written with PyAV: pip install -e '.[video]' "
                                  "(or use GIF)", name=err.name) from err
    return av


def save_mp4(frames, path, fps: int = 8) -> Path:
    """An MP4 of `frames` at `fps` frames per second (see the module docstring for the codec)."""
    av = _av()
    if fps < 1:
        raise ValueError(f"fps={fps}: must be >= 1")
    frames = as_uint8_frames(frames)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18"}   # visually lossless for these small clips
        else:
            stream.bit_rate = 8_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())   # flush the encoder's delayed frames
    return path


def load_mp4(path) -> np.ndarray:
    """uint8 (F, H, W, 3): the frames of a video file, decoded with PyAV."""
    av = _av()
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def save_video(frames, path, video_format: str = "gif", fps: int = 8) -> Path:
    """`frames` as `path` with the suffix of `video_format` (gif | mp4) replacing its own."""
    if video_format not in VIDEO_FORMATS:
        raise ValueError(f"video_format={video_format!r}: choose one of {list(VIDEO_FORMATS)}")
    path = Path(path).with_suffix(f".{video_format}")
    if video_format == "mp4":
        return save_mp4(frames, path, fps)
    return save_gif(frames, path, frame_ms=round(1000 / fps))
