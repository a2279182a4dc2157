"""Generation with the unified model: images (class id or caption -> PNG) and text.

Images: `sample_codes` asks the model's image objective for codes (RDPM: the prompts run once,
then T recurrent block passes against their KV cache, Algorithm 2; see objectives/rdpm.py), and
the tokenizer decodes them. `generate_images` batches requests, checks them all first, and gives
image i the noise seed cfg.seed + i whatever the batching.

Design choices, one line each:
- The rules every image sampler shares (ImageSamplingConfig, guidance, Gumbel-max, top-k, top-p,
  the cached prompt pass) live in sampling_rules.py, below the objectives, and are re-exported here.
- Text: incremental decoding with a static KV cache (`StaticKVCache`); greedy, temperature,
  top-k, top-p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unimodal.model.sampling_rules import (ImageSamplingConfig, StaticKVCache,  # noqa: F401
                                           guidance_scale, guide, gumbel_sample, run_prompts,
                                           top_k_filter, top_p_filter)
from unimodal.model.float8 import convert_layers_to_float8
from unimodal.model.float8_swiglu import use_fp8_swiglu_kernel
from unimodal.model.unified import UnifiedModel
from unimodal.model.vocabulary import image_prompt


@torch.no_grad()
def sample_codes(model: UnifiedModel, prompts: list[list[int]], cfg: ImageSamplingConfig,
                 seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Codes (B, T, h, w) for B prompts (token ids ending in <boi>), drawn by the model's image
    objective (`model.objective.sample`; RDPM: `objectives.rdpm.sample_codes`). Image i uses
    noise seed seeds[i] (default cfg.image_seed(i)).

    `prefix` (B, k, h, w): use these codes for the first k steps instead of sampling them
    (oracle-prefix diagnostics: the tokenizer's codes of a real image, encoded with the same seeds)."""
    return model.objective.sample(model, prompts, cfg, seeds, prefix)


@dataclass
class TextSamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0              # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def validate(self, prefix: str = "text") -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"{prefix}.max_new_tokens={self.max_new_tokens}: must be >= 1")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"{prefix}.temperature={self.temperature}: a finite number >= 0")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"{prefix}.top_p={self.top_p} must be in (0, 1] and top_k >= 0")


@torch.no_grad()
def generate_text(model: UnifiedModel, prompts: list[str], cfg: TextSamplingConfig,
                  on_step=None) -> list[str]:
    """Continue each prompt with text tokens only (image ids are masked out of the softmax).

    `on_step(texts)`, when given, receives every prompt's continuation so far after each new
    token (for streaming to a terminal)."""
    vocab = model.vocab
    device = model.backbone.head_weight.device
    token_lists = [[vocab.bos_id, *vocab.encode_text(p)] for p in prompts]

    def continuation(prompt_ids: list[int], new_ids: list[int]) -> str:
        """The new text, decoded with its prompt so a leading space survives the tokenizer."""
        body = [t for t in prompt_ids[1:] if t != vocab.eos_id]
        new = [t for t in new_ids if t != vocab.eos_id]
        prefix, full = vocab.decode_text(body), vocab.decode_text(body + new)
        return full[len(prefix):] if full.startswith(prefix) else vocab.decode_text(new)
    prompt_cache, valid, next_pos, last_hidden = run_prompts(model, token_lists)
    cache = StaticKVCache(prompt_cache, valid, cfg.max_new_tokens - 1)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    head = model.backbone.head_weight[: vocab.text_size]
    out: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    eos_in_text = vocab.eos_id < vocab.text_size
    for step in range(cfg.max_new_tokens):
        logits = (last_hidden @ head.t()).float()
        if not eos_in_text:  # our own <eos> special sits outside the text range
            eos_logit = (last_hidden @ model.backbone.head_weight[vocab.eos_id]).float()[:, None]
            logits = torch.cat([logits, eos_logit], -1)
        logits = top_p_filter(top_k_filter(logits, cfg.top_k), cfg.top_p)
        nxt = gumbel_sample(logits, cfg.temperature, gen) if cfg.temperature > 0 else logits.argmax(-1)
        if not eos_in_text:
            nxt = torch.where(nxt == vocab.text_size, vocab.eos_id, nxt)
        for i, tok_id in enumerate(nxt.tolist()):
            if not done[i]:
                out[i].append(tok_id)
        if on_step is not None:
            on_step([continuation(p, ids) for p, ids in zip(token_lists, out)])
        done |= nxt == vocab.eos_id
        if bool(done.all()) or step == cfg.max_new_tokens - 1:
            break
        x = model.backbone.embed(nxt[:, None])
        hidden, new_kv = model.backbone(x, next_pos[:, None], cache.key_mask(step),
                                        kv_prefix=cache.prefix)
        cache.write(step, new_kv)
        next_pos = next_pos + 1
        last_hidden = hidden[:, -1]
    return [continuation(p, ids) for p, ids in zip(token_lists, out)]


def compile_for_sampling(model: UnifiedModel, tokenizer, cuda_graphs: bool = False,
                         channels_last: bool = False, overlap_decode: bool = False,
                         fp8: str = "", fuse_projections: bool = True,
                         fp8_keep_bf16: tuple[str, ...] = (), fp8_swiglu_kernel: bool = True) -> None:
    """Fuse the backbone's projections, then torch.compile the backbone, the image objective's
    sampling step and the image decoder in place (CUDA; about 2x faster, see README).

    The objective's step (RDPM: block input, backbone, code head, guidance, top-k/p; see
    `ImageObjective.compile_sampling_step`) compiles as one graph; the backbone alone is also
    compiled for the prompt pass and the token-by-token samplers.
    `cuda_graphs`: mode="reduce-overhead" for the step (for the decoder its equivalent option,
    beside coordinate-descent tuning), so that each replays one
    CUDA graph instead of launching its kernels one by one. An image sampler's block passes all
    have one shape (the prompt cache does not grow), so they replay a single graph; this is what
    makes batch-1 latency small. The token-by-token samplers (text, audio, video) write their
    static KV cache in place between passes, which a graph would copy in full at every replay:
    leave it off there (their one step shape still compiles once without it).
    `channels_last`: the decoder's convolutions in NHWC, which cuDNN runs faster in bf16.
    `overlap_decode`: the decoder will run on a side stream (`sample_and_decode`), so it is
    compiled without CUDA graphs, whose memory pool assumes one stream.
    `fp8` ("tensorwise" | "rowwise"; "" = off): the decoder layers' matmuls in FP8
    (unimodal/model/float8.py). The codes then differ from bf16 sampling's. `fp8_keep_bf16`:
    projections left in bf16 (names in float8.PROJECTIONS).
    `fp8_swiglu_kernel` (with fp8="rowwise", fused projections and `gate_up_proj` in FP8, CUDA):
    each layer's gate/up matmul and SwiGLU as one Triton kernel (float8_swiglu.py).
    `fuse_projections`: q/k/v and gate/up as one matmul each (`LlamaBackbone.fuse_projections`;
    the model's state dict then has the fused names, so do this on a model you will not save)."""
    mode = "reduce-overhead" if cuda_graphs else None
    if fuse_projections:
        model.backbone.fuse_projections()
    if fp8:  # first: it checks torchao and the GPU before anything is swapped
        convert_layers_to_float8(model.backbone, fp8, tuple(fp8_keep_bf16))
    if fp8_swiglu_kernel and fp8 == "rowwise" and fuse_projections \
            and "gate_up_proj" not in fp8_keep_bf16:
        use_fp8_swiglu_kernel(model.backbone)
    model.backbone.forward = torch.compile(model.backbone.forward, dynamic=False, mode=mode)
    model.objective.compile_sampling_step(mode)
    if channels_last:
        tokenizer.decoder.to(memory_format=torch.channels_last)
    decoder_graphs = cuda_graphs and not overlap_decode
    # Coordinate-descent tuning of the decoder's Triton kernels (its GroupNorm reductions, fused
    # with the convolutions' neighbours): 217 -> 168 ms for 256 images on an H200 (README). Not
    # for the step: it did not pay there, and retuned reductions could change the codes' logits.
    tokenizer.decoder = torch.compile(tokenizer.decoder, options={
        "triton.cudagraphs": decoder_graphs, "coordinate_descent_tuning": True})
    tokenizer.decoder_cuda_graphs = decoder_graphs


@torch.no_grad()
def sample_and_decode(model: UnifiedModel, tokenizer, batches, cfg: ImageSamplingConfig,
                      overlap_decode: bool = False):
    """Images (n, 3, H, W) in [-1, 1] on the CPU, one tensor per (prompts, seeds) of `batches`,
    in order. `overlap_decode` (CUDA): batch i decodes on a side stream while batch i+1 is
    sampled, so the decoder's time hides behind the generator's (its images come back one batch
    later; the codes and pixels are the same)."""
    device = model.backbone.head_weight.device
    if overlap_decode and getattr(tokenizer, "decoder_cuda_graphs", False):
        raise ValueError("overlap_decode needs a decoder compiled without CUDA graphs: "
                         "compile_for_sampling(..., overlap_decode=True)")
    stream = torch.cuda.Stream(device) if overlap_decode and device.type == "cuda" else None
    pending = None  # (pinned host images, event) of the batch decoding on the side stream
    for prompts, seeds in batches:
        codes = sample_codes(model, prompts, cfg, seeds)
        if stream is None:
            torch.compiler.cudagraph_mark_step_begin()  # the decoder's graph may reuse memory
            yield tokenizer.decode(codes).float().clamp(-1, 1).cpu()
            continue
        if pending is not None:
            pending[1].synchronize()
            yield pending[0]
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            images = tokenizer.decode(codes).float().clamp(-1, 1)
            host = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
            host.copy_(images, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        codes.record_stream(stream)  # made on the main stream, read on the side one
        pending = (host, done)
    if pending is not None:
        pending[1].synchronize()
        yield pending[0]


@dataclass
class ImageRequest:
    caption: str | None = None
    class_id: int | None = None

    def name(self) -> str:
        return f"class{self.class_id}" if self.caption is None else self.caption


def max_prompt_tokens(model: UnifiedModel) -> int:
    """The longest prompt (with <bos> and <boi>) that leaves room for one image block (h*w
    positions: an RDPM block, the next_token codes after <boi>, the masked image)."""
    h, w = model.tok_cfg.grid
    return model.backbone.config.max_position_embeddings - h * w


def validate_requests(requests: list[ImageRequest], vocab, max_tokens: int | None = None) -> None:
    """Every problem is found before any sampling starts: empty, non-UTF-8 or over-long prompts
    (`max_tokens`, see `max_prompt_tokens`), unknown class ids."""
    if not requests:
        raise ValueError("nothing to sample: no prompts and no class ids")
    for i, req in enumerate(requests):
        if req.caption is not None:
            if not req.caption.strip():
                raise ValueError(f"prompt {i} is empty")
            try:
                req.caption.encode("utf-8")
            except UnicodeEncodeError:  # argv bytes that were not UTF-8 arrive as surrogates
                raise ValueError(f"prompt {i} is not valid UTF-8: {req.caption[:60]!r}") from None
            if max_tokens is not None:
                length = len(image_prompt(vocab, req.caption))
                if length > max_tokens:
                    raise ValueError(f"prompt {i} is {length} tokens; the model's context leaves "
                                     f"{max_tokens} for a prompt (max_position_embeddings minus "
                                     f"one image block): shorten it")
        else:
            vocab.class_token(req.class_id)  # raises, naming the id and the valid range


def check_batch_size(batch_size: int, name: str = "batch_size") -> None:
    if batch_size < 1:
        raise ValueError(f"{name}={batch_size}: must be >= 1")


@torch.no_grad()
def generate_images(model: UnifiedModel, tokenizer, requests: list[ImageRequest],
                    cfg: ImageSamplingConfig, batch_size: int = 32, progress=None,
                    overlap_decode: bool = False) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1]; image i uses noise seed cfg.seed + i. `overlap_decode`:
    see `sample_and_decode`."""
    check_batch_size(batch_size)
    cfg.validate()
    validate_requests(requests, model.vocab, max_prompt_tokens(model))
    batches = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        batches.append(([image_prompt(model.vocab, r.caption, r.class_id) for r in chunk],
                        [cfg.image_seed(start + i) for i in range(len(chunk))]))
    images = []
    for decoded in sample_and_decode(model, tokenizer, batches, cfg, overlap_decode):
        images.append(decoded)
        if progress is not None:
            progress.update(len(decoded))
    return torch.cat(images)
