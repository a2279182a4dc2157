"""Random-weight stand-ins for the pretrained files the metrics load, for tests and pipeline checks.

Numbers computed with these files mean nothing; they only show that a pipeline runs end to end
on a machine without the real weights (and without network access).

Design choices, one line each:
- The Inception file has exactly the keys torch-fidelity's `inception-v3-compat` loads; it is
  built from torch-fidelity's own module, constructed without loading anything.
- Convolutions get He-normal weights so features neither vanish nor explode through 94 layers
  (the BatchNorm running statistics are the identity): distances between images stay informative.
- The CLIP file is the state dict of a registered open_clip architecture; `TINY_CLIP_CONFIG` is
  a small architecture (1 layer per tower, 32 wide) that open_clip registers from a JSON file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """A state dict for torch-fidelity's FeatureExtractorInceptionV3, random He-normal weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the constructor always loads: skip it
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)  # read by the constructor, then ignored by _Unloaded
        net = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
        elif isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=module.in_features ** -0.5, generator=gen)
            torch.nn.init.zeros_(module.bias)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, path)
    return path


def write_clip_config(path: str | Path, config: dict | None = None) -> Path:
    """An open_clip architecture JSON; its file stem becomes the model name once registered."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config or TINY_CLIP_CONFIG, indent=2))
    return path


def write_random_clip_weights(model_name: str, path: str | Path, config_file: str | Path | None = None,
                              seed: int = 0) -> Path:
    """The random-init state dict of open_clip architecture `model_name` (registered from
    `config_file` first when given)."""
    import open_clip

    if config_file is not None:
        open_clip.add_model_config(str(config_file))
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
