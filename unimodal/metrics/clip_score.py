"""CLIP score of image/prompt pairs with open_clip, from a local weights file.

Design choices, one line each:
- The architecture is an open_clip model name (default ViT-B-32); the weights are a local file
  (`clip_weights=`); a JSON architecture file can be registered for models open_clip lacks.
- Prompts get a prefix before tokenisation, "A photo depicts " by default (CLIPScore, Hessel et al.
  2021; the GigaGAN evaluation script LlamaGen uses); open_clip truncates at 77 tokens, so the
  prefix always survives.
- Images go through the model's own evaluation transform (resize, centre crop, normalise) as PIL
  images, i.e. exactly what a PNG on disk would give.
- Two numbers, named by what they are: `cosine_mean` = mean cosine(image, text) (what GigaGAN and
  LlamaGen tables report, ~0.3 for good models), and `clip_score_100` = mean of 100 x
  max(cosine, 0) (the torchmetrics CLIPScore convention, ~30).
- Prompts files: read by `unimodal.data.prompt_files.read_prompts` (text, JSON list or COCO).
"""

from __future__ import annotations

from pathlib import Path

import torch

DEFAULT_PREFIX = "A photo depicts "
DEFAULT_MODEL = "ViT-B-32"


def clip_weights_or_error(path: str | None, model_name: str, option: str = "clip_weights") -> str:
    hint = (f"a local open_clip checkpoint for {model_name} (e.g. open_clip_pytorch_model.bin from "
            "the laion/CLIP-ViT-B-32-laion2B-s34B-b79K Hugging Face repository, or OpenAI's "
            "ViT-B-32.pt used with clip_model=ViT-B-32-quickgelu); nothing is downloaded")
    if not path:
        raise FileNotFoundError(f"{option} is required: {hint}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option}={path}: file not found; expected {hint}")
    return str(path)


class ClipScorer:
    """open_clip model + transform + tokenizer; `cosine(images, prompts)` per pair."""

    def __init__(self, weights: str, model_name: str = DEFAULT_MODEL, device: torch.device | str = "cpu",
                 prefix: str = DEFAULT_PREFIX, config_file: str | None = None):
        import open_clip

        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"clip_model_config={config_file}: not found")
            open_clip.add_model_config(config_file)
        if model_name not in open_clip.list_models():
            raise ValueError(f"clip_model={model_name!r}: not an open_clip architecture (see "
                             "open_clip.list_models(), or register one with clip_model_config)")
        self.weights = clip_weights_or_error(weights, model_name)
        self.device, self.prefix, self.model_name = torch.device(device), prefix, model_name
        try:
            model, _, self.transform = open_clip.create_model_and_transforms(
                model_name, pretrained=self.weights, device=self.device)
        except RuntimeError as err:
            raise ValueError(f"clip_weights={weights}: does not fit clip_model={model_name} "
                             f"({str(err)[:200]})") from err
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @torch.no_grad()
    def cosine(self, images: list, prompts: list[str]) -> torch.Tensor:
        """Cosine similarity (N,) of PIL image i with prefix + prompt i."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        pixels = torch.stack([self.transform(img.convert("RGB")) for img in images]).to(self.device)
        tokens = self.tokenizer([self.prefix + p for p in prompts]).to(self.device)
        image_emb = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        text_emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
        return (image_emb * text_emb).sum(-1).cpu()


def clip_score_summary(cosines: torch.Tensor) -> dict:
    cos = cosines.double()
    return {"cosine_mean": cos.mean().item(),
            "cosine_std": cos.std().item() if cos.numel() > 1 else 0.0,
            "clip_score_100": (100 * cos.clamp_min(0)).mean().item(),
            "pairs": int(cos.numel())}


def score_files(scorer: ClipScorer, files: list[Path], prompts: list[str], batch_size: int = 64,
                progress=None) -> torch.Tensor:
    """Cosines for (file i, prompt i), in batches."""
    from PIL import Image

    out = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        images = []
        for f in chunk:
            with Image.open(f) as im:
                images.append(im.convert("RGB"))
        out.append(scorer.cosine(images, prompts[start:start + batch_size]))
        if progress is not None:
            progress.update(len(chunk))
    return torch.cat(out) if out else torch.zeros(0)
