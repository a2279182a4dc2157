"""Generation with the unified model: recurrent image sampling (RDPM Algorithm 2) and text.

Images (class id or caption -> PNG):
1. The prompts run once (cond and, with guidance, the <null> prompt); their keys/values are kept.
2. For t = 1..T: one pass of the h*w block against the cached prompt; code logits ->
   classifier-free guidance -> Gumbel-max at temperature tau (optional top-k) -> C_t;
   z'_t = z'_{t-1} + v'(C_t).
3. The tokenizer decodes the codes.

Design choices, one line each:
- Guidance follows the paper: logits = cond + lambda_t * (cond - uncond); lambda_t = lambda
  (constant) or lambda * t / T ("CFG linear", the paper's best). lambda = 0 skips the <null> pass.
  With a distance or latent code head this is exactly a move of the predicted latent to
  (1 + lambda) pred_cond - lambda pred_uncond (a test shows it), so lambda extrapolates in latent
  space and a large one can overshoot.
- Gumbel-max: argmax(logits / tau + g), g ~ Gumbel(0, 1); tau = 1 samples the softmax exactly,
  tau -> 0 is argmax. (The paper writes the temperature as a multiplier of the logits.)
- Prompts are left-padded; padding is masked out of attention and positions start at each
  prompt's first real token, so a batch gives the same codes as one prompt at a time.
- eps_t comes from per-image integer seeds (the tokenizer's `rdpm_noise` contract), and the
  Gumbel noise from a generator seeded by the same seed: results are reproducible from seeds.
- Text: incremental decoding with a growing KV cache; greedy, temperature, top-k, top-p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unimodal.model.vocabulary import image_prompt
from unimodal.model.unified import UnifiedModel
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise


@dataclass
class ImageSamplingConfig:
    cfg_scale: float = 4.0                # lambda; 0 = no guidance
    cfg_schedule: str = "linear"          # linear | constant
    temperature: float = 1.0              # tau; 0 = argmax
    top_k: int = 0                        # 0 = all codes
    seed: int = 0                         # image i uses noise seed `seed + i`

    def image_seed(self, index: int) -> int:
        """The noise seed of image `index` of a run (the one place the rule is written): it
        depends on the index only, not on batching, sharding or resuming."""
        return self.seed + index

    def validate(self, prefix: str = "sampling") -> None:
        if self.cfg_schedule not in ("linear", "constant"):
            raise ValueError(f"{prefix}.cfg_schedule={self.cfg_schedule!r}: linear or constant")
        # NaN passes every comparison, so check finiteness first (NaN guidance gives every class
        # the same image).
        for key in ("cfg_scale", "temperature"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{prefix}.{key}={value}: must be a finite number >= 0")
        if self.top_k < 0:
            raise ValueError(f"{prefix}.top_k={self.top_k}: must be >= 0 (0 = all codes)")


def guidance_scale(cfg_scale: float, schedule: str, step: int, steps: int) -> float:
    return cfg_scale * step / steps if schedule == "linear" else cfg_scale


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return cond + scale * (cond - uncond)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def gumbel_sample(logits: torch.Tensor, temperature: float,
                  generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """argmax(logits / tau + Gumbel noise); a list of generators gives one per row of logits."""
    if temperature == 0:
        return logits.argmax(-1)
    if isinstance(generator, list):
        u = torch.stack([torch.rand(logits.shape[1:], generator=g, device=logits.device)
                         for g in generator])
    else:
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
    return (logits / temperature - torch.log(-torch.log(u.clamp_(1e-20, 1.0)))).argmax(-1)


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), length), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):] = torch.tensor(p)
        valid[i, length - len(p):] = True
    positions = (valid.long().cumsum(1) - 1).clamp_min(0)
    return ids.to(device), valid.to(device), positions.to(device)


def _prompt_mask(valid: torch.Tensor) -> torch.Tensor:
    """Causal over real tokens, padding invisible; every row sees itself."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    return ((causal[None] & valid[:, None, :]) | eye[None])[:, None]


@torch.no_grad()
def run_prompts(model: UnifiedModel, prompts: list[list[int]]):
    """Prompt pass: (per-layer KV cache, valid mask, next position per row, last hidden state)."""
    device = model.backbone.head_weight.device
    ids, valid, positions = _left_pad(prompts, model.vocab.pad_id, device)
    hidden, cache = model.backbone(model.backbone.embed(ids), positions, _prompt_mask(valid))
    return cache, valid, positions[:, -1] + 1, hidden[:, -1]


@torch.no_grad()
def sample_codes(model: UnifiedModel, prompts: list[list[int]], cfg: ImageSamplingConfig,
                 seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Codes (B, T, h, w) for B prompts (token ids ending in <boi>).

    `prefix` (B, k, h, w): use these codes for steps 1..k instead of sampling them (oracle-prefix
    diagnostics: the tokenizer's codes of a real image, encoded with the same seeds)."""
    cfg.validate()
    vocab, tok = model.vocab, model.tok_cfg
    device = model.backbone.head_weight.device
    b = len(prompts)
    seeds = seeds if seeds is not None else [cfg.image_seed(i) for i in range(b)]
    guided = cfg.cfg_scale != 0
    null_prompt = image_prompt(vocab)  # <bos> <null> <boi>
    cache, valid, next_pos, _ = run_prompts(model, prompts + [null_prompt] * b if guided else prompts)
    rows = valid.shape[0]
    h, w = tok.grid
    noise = rdpm_noise(seeds, tok.steps, (tok.latent_dim, h, w), device=device)
    if guided:
        noise = torch.cat([noise, noise])  # cond and uncond rows see the same eps_t
    # One Gumbel generator per image: an image's codes do not depend on the rest of its batch.
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    latent = torch.zeros((rows, tok.latent_dim, h, w), device=device)
    codes = []
    for t in range(1, tok.steps + 1):
        logits = block_logits(model, cache, valid, next_pos, latent, noise[:, t - 1], t)
        if guided:
            logits = guide(logits[:b], logits[b:],
                           guidance_scale(cfg.cfg_scale, cfg.cfg_schedule, t, tok.steps))
        logits = top_k_filter(logits, cfg.top_k)
        c_t = gumbel_sample(logits, cfg.temperature, gens).view(b, h, w)
        if prefix is not None and t <= prefix.shape[1]:
            c_t = prefix[:, t - 1].to(device)
        codes.append(c_t)
        step_latent = model.image_input.quantizer.embed_step(c_t).to(latent.dtype)
        latent = latent + (torch.cat([step_latent, step_latent]) if guided else step_latent)
    return torch.stack(codes, dim=1)


@torch.no_grad()
def block_logits(model: UnifiedModel, cache, valid: torch.Tensor, next_pos: torch.Tensor,
                 latent_prev: torch.Tensor, noise_t: torch.Tensor, t: int) -> torch.Tensor:
    """Code logits (rows, h*w, K) of the step-t block against the cached prompt."""
    rows, _, h, w = latent_prev.shape
    hw, device = h * w, latent_prev.device
    positions = next_pos[:, None] + torch.arange(hw, device=device)[None]
    # Block queries see the real prompt tokens and their whole block; no mask when nothing is padded.
    mask = None
    if not bool(valid.all()):
        keys = torch.cat([valid, torch.ones(rows, hw, dtype=torch.bool, device=device)], 1)
        mask = keys[:, None, None, :].expand(rows, 1, hw, -1)
    steps = torch.full((rows,), t, device=device, dtype=torch.long)
    x = model.image_input.project(latent_prev, noise_t, steps).to(model.backbone.head_weight.dtype)
    hidden, _ = model.backbone(x, positions, mask, kv_prefix=cache)
    ctx = model.image_input.context(latent_prev, noise_t, steps)
    return model.code_logits(hidden.flatten(0, 1), ctx).view(rows, hw, -1)


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


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > p  # keep the smallest prefix whose mass reaches p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


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
    cache, valid, next_pos, last_hidden = run_prompts(model, token_lists)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    head = model.backbone.head_weight[: vocab.text_size]
    out: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    eos_in_text = vocab.eos_id < vocab.text_size
    for _ in range(cfg.max_new_tokens):
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
        if bool(done.all()):
            break
        valid = torch.cat([valid, torch.ones(len(prompts), 1, dtype=torch.bool, device=device)], 1)
        x = model.backbone.embed(nxt[:, None])
        hidden, new_kv = model.backbone(x, next_pos[:, None], valid[:, None, None, :],
                                        kv_prefix=cache)
        cache = [(torch.cat([k, nk], 2), torch.cat([v, nv], 2))
                 for (k, v), (nk, nv) in zip(cache, new_kv)]
        next_pos = next_pos + 1
        last_hidden = hidden[:, -1]
    return [continuation(p, ids) for p, ids in zip(token_lists, out)]


def compile_for_sampling(model: UnifiedModel, tokenizer) -> None:
    """torch.compile the backbone and the image decoder in place (CUDA; about 2x faster, see README)."""
    model.backbone.forward = torch.compile(model.backbone.forward, dynamic=False)
    tokenizer.decoder = torch.compile(tokenizer.decoder)


@dataclass
class ImageRequest:
    caption: str | None = None
    class_id: int | None = None

    def name(self) -> str:
        return f"class{self.class_id}" if self.caption is None else self.caption


def max_prompt_tokens(model: UnifiedModel) -> int:
    """The longest prompt (with <bos> and <boi>) that leaves room for one image block."""
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
                    cfg: ImageSamplingConfig, batch_size: int = 32, progress=None) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1]; image i uses noise seed cfg.seed + i."""
    check_batch_size(batch_size)
    cfg.validate()
    validate_requests(requests, model.vocab, max_prompt_tokens(model))
    images = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start:start + batch_size]
        prompts = [image_prompt(model.vocab, r.caption, r.class_id) for r in chunk]
        seeds = [cfg.image_seed(start + i) for i in range(len(chunk))]
        codes = sample_codes(model, prompts, cfg, seeds)
        images.append(tokenizer.decode(codes).float().clamp(-1, 1).cpu())
        if progress is not None:
            progress.update(len(chunk))
    return torch.cat(images)
