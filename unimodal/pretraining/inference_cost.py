"""Inference cost of an image objective: model FLOPs per image as a function of the sampling
steps, and measured wall time per image at a given batch size.

FLOPs per image, the convention of flops.py (training) applied to the forward pass only:

    rows x [ prompt + sum over the sampler's passes ]
    prompt     = 2 * P_layers * p + 4 * n_layers * W * p * p
    rdpm       = per block pass (steps = T):  2 * (P_layers + H + 2d * W) * hw + 4 * n_layers * W * hw * (p + hw)
    masked     = per pass (steps = S):        2 * (P_layers + H) * hw       + 4 * n_layers * W * hw * (p + hw)
    next_token = steps codes (h*w for an image): 2 * H per code drawn, and per code fed back
                 (codes 1 .. steps-1): 2 * P_layers + 4 * n_layers * W * (p + i) for the i-th

2 FLOPs per multiply-add (forward only; training's 6 = forward + backward). P_layers = the
parameters of the decoder layers, H = the code head's multiply-adds per code (code_head_parameters:
W * K shared, W * d + d * K latent/distance), 2d * W = rdpm's block projector. Attention is
counted as in training (PaLM): QK^T and AV over every key the query is computed against, the
prompt's p x p matrix in full (not reduced for the causal mask), the cached prompt plus the
image positions for a pass (p + hw keys; next_token: the keys cached so far, not the static KV
cache's unwritten slots, which the sampler masks and a length-aware decode kernel skips). rows = 2 with
classifier-free guidance (the prompt and its <null> twin run as one doubled batch), else 1.
Not counted: embedding lookups, softmax, Gumbel and top-k/top-p, RDPM's frozen code -> latent
map (a d x d conv per code), and the image tokenizer's decoder (the same decoder, run once per
image, for every objective; the measured wall time includes it).

Wall time (`ms_per_image`): codes sampled and decoded to pixels for a batch of prompts, after
`warmup` untimed batches (kernel selection, allocator, compile); on CUDA the clock reads happen
after torch.cuda.synchronize(), on the CPU plainly.
"""

from __future__ import annotations

import time

import torch

from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.model.unified import UnifiedModel
from unimodal.model.vocabulary import image_prompt
from unimodal.pretraining.flops import (block_projector_parameters, code_head_parameters,
                                        layer_parameter_count)


def sampling_steps(model: UnifiedModel, cfg: ImageSamplingConfig) -> int:
    """The objective's number of sampling steps: rdpm T block passes, masked S passes,
    next_token h*w codes (one forward each after the first)."""
    name = model.cfg.image_objective
    if name == "rdpm":
        return model.tok_cfg.code_maps
    if name == "masked":
        return cfg.mask_steps
    if name == "next_token":
        h, w = model.tok_cfg.grid
        return h * w
    raise ValueError(f"no inference FLOPs formula for image objective {name!r}")


def inference_matmul_flops(model: UnifiedModel, prompt_len: int, steps: int,
                           guided: bool = True) -> float:
    """The weight matmuls of sampling one image (see the module docstring)."""
    layers, head = layer_parameter_count(model), code_head_parameters(model)
    h, w = model.tok_cfg.grid
    hw, name = h * w, model.cfg.image_objective
    prompt = layers * prompt_len
    if name == "next_token":
        image = head * steps + layers * max(steps - 1, 0)
    else:
        image = steps * hw * (layers + head + block_projector_parameters(model))
    return (2 if guided else 1) * 2.0 * (prompt + image)


def inference_attention_flops(model: UnifiedModel, prompt_len: int, steps: int,
                              guided: bool = True) -> float:
    """QK^T and AV of sampling one image: 4 * n_layers * W per query and key computed."""
    cfg = model.backbone.config
    h, w = model.tok_cfg.grid
    hw, p = h * w, prompt_len
    pairs = p * p
    if model.cfg.image_objective == "next_token":
        fed = max(steps - 1, 0)                       # codes fed back, the i-th sees p + i keys
        pairs += fed * p + fed * (fed + 1) // 2
    else:
        pairs += steps * hw * (p + hw)
    return (2 if guided else 1) * 4.0 * cfg.num_hidden_layers * cfg.hidden_size * pairs


def inference_flops(model: UnifiedModel, prompt_len: int, steps: int | None = None,
                    cfg: ImageSamplingConfig | None = None) -> float:
    """Model FLOPs of sampling one image from a prompt of `prompt_len` tokens (with <bos> and
    <boi>) in `steps` sampling steps (default: the objective's, `sampling_steps`)."""
    cfg = cfg or ImageSamplingConfig()
    steps = sampling_steps(model, cfg) if steps is None else steps
    guided = cfg.cfg_scale != 0
    return (inference_matmul_flops(model, prompt_len, steps, guided)
            + inference_attention_flops(model, prompt_len, steps, guided))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def ms_per_image(model: UnifiedModel, tokenizer, captions: list[str], cfg: ImageSamplingConfig,
                 batch_size: int, repeats: int = 1, warmup: int = 1) -> float:
    """Measured milliseconds per image (codes sampled and decoded) at `batch_size` prompts per
    call; the captions are cycled to fill the batch. `warmup` batches run first, untimed."""
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch_size={batch_size}, repeats={repeats} (>= 1), warmup={warmup} (>= 0)")
    prompts = [image_prompt(model.vocab, captions[i % len(captions)]) for i in range(batch_size)]
    seeds = [cfg.image_seed(i) for i in range(batch_size)]
    device = model.backbone.head_weight.device

    def one_batch() -> None:
        tokenizer.decode(model.objective.sample(model, prompts, cfg, seeds))

    for _ in range(warmup):
        one_batch()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        one_batch()
    _sync(device)
    return (time.perf_counter() - start) * 1000.0 / (repeats * batch_size)
