"""Where the unified model's image generation goes wrong, measured on held-out shapes scenes.

- Teacher forcing per step t: the tokenizer's true codes C_1..C_{t-1} give z'_{t-1}; the model
  predicts C_t. Accuracy (argmax = C_t) and cross-entropy per step show which steps are learned.
- The same with the prompts shuffled across the batch (the conditioning check): if the prompt
  reaches the image blocks, the late steps' accuracy falls; if nothing changes, it does not.
- Oracle prefix: steps 1..k come from the tokenizer (the real image's codes under the same noise
  seeds), the model samples k+1..T; the shapes checker scores the decoded image. k = T is the
  tokenizer's own reconstruction (the ceiling), k = 0 is plain sampling. The k where accuracy
  drops is the step where generation goes wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unimodal.model.vocabulary import image_prompt
from unimodal.data.shapes import render_sample
from unimodal.metrics.shapes_checker import ShapesAccuracy, score_image, spec_from_objects
from unimodal.model.objectives.rdpm import block_logits
from unimodal.model.sampling import ImageSamplingConfig, run_prompts, sample_codes
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise

HELDOUT_OFFSET = 1_000_000  # the held-out scene indices eval/shapes_score.py uses


def heldout_scenes(count: int, image_size: int, seed: int = 0, offset: int = HELDOUT_OFFSET):
    """(images (N, 3, S, S) in [-1, 1], scenes) for held-out shapes indices offset .. offset+N-1."""
    scenes = [render_sample(offset + i, seed, image_size) for i in range(count)]
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 127.5 - 1
                          for s in scenes])
    return images, scenes


@torch.no_grad()
def teacher_forced_steps(model, tokenizer, images: torch.Tensor, captions: list[str],
                         seeds: list[int]) -> dict[str, list[float]]:
    """Per-step accuracy and cross-entropy of C_t given the true z'_{t-1} and the prompt."""
    device = model.backbone.head_weight.device
    codes = tokenizer.encode(images.to(device), seeds)
    prompts = [image_prompt(model.vocab, c) for c in captions]
    cache, valid, next_pos, _ = run_prompts(model, prompts)
    code_maps, (h, w) = model.tok_cfg.code_maps, model.tok_cfg.grid
    noise = rdpm_noise(seeds, code_maps, (model.tok_cfg.latent_dim, h, w), device=device)
    quantizer = model.image_input.quantizer
    latent = torch.zeros_like(noise[:, 0])
    acc, loss = [], []
    for t in range(1, code_maps + 1):
        logits = block_logits(model, cache, valid, next_pos, latent, noise[:, t - 1], t)
        target = codes[:, t - 1].flatten(1)
        acc.append((logits.argmax(-1) == target).float().mean().item())
        loss.append(F.cross_entropy(logits.flatten(0, 1), target.flatten()).item())
        latent = latent + quantizer.embed_step(codes[:, t - 1]).to(latent.dtype)
    return {"accuracy": acc, "loss": loss}


@torch.no_grad()
def oracle_prefix_accuracy(model, tokenizer, images: torch.Tensor, scenes, seeds: list[int],
                           prefix_steps: list[int], sampling: ImageSamplingConfig,
                           batch_size: int = 64) -> dict[int, dict]:
    """Shapes-checker accuracy of images whose first k code maps are the tokenizer's, per k."""
    device = model.backbone.head_weight.device
    chunks = [slice(start, start + batch_size) for start in range(0, len(scenes), batch_size)]
    # The real images' codes under the sampling seeds: encoded once, reused for every k.
    codes = [tokenizer.encode(images[c].to(device), seeds[c]) for c in chunks]
    prompts = [[image_prompt(model.vocab, s.caption) for s in scenes[c]] for c in chunks]
    out = {}
    for k in prefix_steps:
        accuracy = ShapesAccuracy()
        for chunk, chunk_codes, chunk_prompts in zip(chunks, codes, prompts):
            sampled = sample_codes(model, chunk_prompts, sampling, seeds[chunk],
                                   prefix=chunk_codes[:, :k])
            decoded = tokenizer.decode(sampled).float().clamp(-1, 1).cpu()
            for image, scene in zip(decoded, scenes[chunk]):
                spec = spec_from_objects(scene.objects)
                accuracy.update(score_image(image, spec), spec)
        out[k] = accuracy.compute()
    return out
