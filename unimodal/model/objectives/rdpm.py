"""The RDPM image objective (the paper's Markov recurrent code prediction), in one file.

Training document:  <bos> prompt <boi> | block(t_1) | ... | block(t_k)
    k distinct steps t of 1..T per document; a block holds the h*w positions of one step, with
    positions prefix_len .. prefix_len + h*w - 1 (every block of an image reuses them), input
    proj(concat(z'_{t-1}, eps_t)) + step_embed[t] built in the model, target code_offset + C_t[i].
Attention: a block sees its document's prompt and its own block (bidirectional), not the other
    blocks of its image: z'_{t-1} in the block input carries the history.
Sampling (Algorithm 2): the prompts run once; for t = 1..T one pass of the h*w block against the
    cached prompt -> guidance -> Gumbel-max (optional top-k, top-p) -> C_t; z'_t = z'_{t-1} + v'(C_t).

Design choices, one line each:
- k steps drawn uniformly, or with data.step_weights one after the other with probability
  proportional to the weights of the steps not yet drawn (`draw_steps`); equal weights are the
  uniform draw, the same random stream.
- eps_t is regenerated from the sample's seed (CPU, `rdpm_noise`) in loader workers; sampling uses
  the same per-image seeds, and a Gumbel generator per image seeded by the same seed, so an image
  does not depend on the rest of its batch.
- z'_{t-1} is rebuilt inside the model from the codes C_1..C_{t-1} with a frozen copy of the
  image tokenizer's codebook and shared bias conv.
- Code head (`model.code_head`): `shared` = the code slice of the one output head; `distance` =
  predict v_t, logits -|v_hat - c_k|^2 / tau_t over the frozen codebook; `latent` = predict the
  clean latent z_hat, v_hat = a_t (z_hat - z'_{t-1}) + b_t eps_t exactly as Algorithm 1 does;
  `latent_shared` = the latent head's logits plus the shared head's code slice.
- With a distance or latent head, logit-space guidance equals a move of the predicted latent to
  (1 + lambda) pred_cond - lambda pred_uncond, so a large lambda can overshoot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from unimodal.model.document import IGNORE, Document
from unimodal.model.objectives import ImageObjective
from unimodal.model.sampling_rules import (BlockGeometry, ImageSamplingConfig, any_padding,
                                           block_geometry, block_rope, guidance_scale,
                                           guided_logits, gumbel_argmax, run_prompts,
                                           uniform_draws)
from unimodal.model.vocabulary import Vocabulary, image_prompt
from unimodal.tokenizer.rdpm_quantizer import rdpm_noise
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig, build_quantizer

CODE_HEADS = ("shared", "distance", "latent", "latent_shared")


# ------------------------------------------------------------------------ training documents
def step_probabilities(weights, steps: int) -> np.ndarray | None:
    """data.step_weights -> probabilities over steps 1..T; None = uniform (empty or all equal)."""
    if not len(weights) or (len(set(weights)) == 1 and weights[0] > 0):
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (steps,) or not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"step weights {list(weights)}: need {steps} finite values >= 0")
    return w / w.sum()


def draw_steps(rng: np.random.Generator, steps: int, k: int,
               probs: np.ndarray | None = None) -> list[int]:
    """k distinct steps of 1..T in increasing order; with probs, each draw picks one of the steps
    left with probability proportional to its weight. probs=None is the original uniform draw."""
    if probs is None:
        return np.sort(rng.choice(steps, size=k, replace=False) + 1).tolist()
    return np.sort(rng.choice(steps, size=k, replace=False, p=probs) + 1).tolist()


def image_document(vocab: Vocabulary, prompt: list[int], codes: torch.Tensor, seed: int,
                   steps: list[int], latent_dim: int, prompt_targets: bool) -> Document:
    """Prompt then one block per step in `steps` (1-based), codes (T, h, w). Prompt tokens are
    text targets when `prompt_targets` (captions), else none (class tokens, <null>)."""
    big_t, h, w = codes.shape
    noise = rdpm_noise([seed], big_t, (latent_dim, h, w))[0]
    p = len(prompt)
    targets = prompt[1:] + [IGNORE] if prompt_targets else [IGNORE] * p
    doc = Document(list(prompt), targets, list(range(p)), [-1] * p)
    hw = h * w
    for t in steps:
        if not 1 <= t <= big_t:
            raise ValueError(f"block step {t} outside 1..{big_t}")
        doc.blocks.append({"block_codes": codes, "block_steps": t, "block_noise": noise[t - 1]})
        doc.input_ids += [vocab.pad_id] * hw
        doc.targets += (codes[t - 1].flatten() + vocab.code_offset).tolist()
        doc.position_ids += list(range(p, p + hw))
        doc.block_of += [len(doc.blocks) - 1] * hw
    return doc


# ------------------------------------------------------------------------------------ modules
@dataclass
class BlockContext:
    """What the code head needs at each block position, flattened in block position order."""
    latent_prev: torch.Tensor             # z'_{t-1}, (M, d)
    noise: torch.Tensor                   # eps_t, (M, d)
    steps: torch.Tensor                   # t in 1..T, (M,)

    def select(self, rows) -> "BlockContext":
        """The context of some rows (a slice: a chunk of the loss)."""
        return BlockContext(self.latent_prev[rows], self.noise[rows], self.steps[rows])


class RDPMBlockInput(nn.Module):
    """The RDPM objective's modules: block inputs proj(concat(z'_{t-1}, eps_t)) + step_embed[t],
    and the code logits of the chosen code head."""

    def __init__(self, tok_cfg: RDPMTokenizerConfig, width: int, code_head: str = "shared"):
        super().__init__()
        self.code_head = code_head
        self.code_maps, self.latent_dim = tok_cfg.code_maps, tok_cfg.latent_dim
        # Frozen copy of the tokenizer's code -> latent map (codebook + shared bias conv).
        self.quantizer = build_quantizer(tok_cfg)
        self.quantizer.requires_grad_(False)
        self.proj = nn.Linear(2 * tok_cfg.latent_dim, width)
        self.step_embed = nn.Embedding(tok_cfg.code_maps + 1, width)  # index t = 1..T
        if code_head != "shared":
            self.head_proj = nn.Linear(width, tok_cfg.latent_dim)  # -> v_hat or z_hat
            # log(1 / tau_t) per step (index t = 1..T): how sharp the softmax over distances is.
            self.log_inv_tau = nn.Parameter(torch.zeros(tok_cfg.code_maps + 1))
            # a_t, b_t in float32 per device (not buffers: a bf16 model would round them).
            self._schedule: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def init_weights(self, std: float) -> None:
        nn.init.normal_(self.proj.weight, std=std)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.step_embed.weight, std=std)

    def load_tokenizer(self, tokenizer_state: dict[str, torch.Tensor]) -> None:
        """Copy the image tokenizer's quantizer weights (codebook, shared bias) into the frozen copy."""
        prefix = "quantizer."
        state = {k[len(prefix):]: v for k, v in tokenizer_state.items() if k.startswith(prefix)}
        self.quantizer.load_state_dict(state)

    def schedule(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, b_t) for t = 0..T (index 0 unused) as float32 tensors on `device`."""
        if device not in self._schedule:
            q = self.quantizer
            self._schedule[device] = (torch.tensor((0.0, *q.alphas), device=device),
                                      torch.tensor((0.0, *q.betas), device=device))
        return self._schedule[device]

    def latent_before(self, codes: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """z'_{t-1} for each block: codes (N, T, h, w), steps t (N,) in 1..T -> (N, d, h, w)."""
        n, big_t = codes.shape[:2]
        with torch.no_grad():
            per_step = self.quantizer.embed_step(codes.flatten(0, 1)).unflatten(0, (n, big_t))
            keep = torch.arange(big_t, device=codes.device)[None] < (steps[:, None] - 1)
            return (per_step * keep[:, :, None, None, None]).sum(1)

    def project(self, latent_prev: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor):
        """(N, d, h, w) z'_{t-1} and eps_t, steps (N,) -> block inputs (N, h*w, width)."""
        x = torch.cat([latent_prev, noise.to(latent_prev.dtype)], dim=1).flatten(2).transpose(1, 2)
        return self.proj(x.to(self.proj.weight.dtype)) + self.step_embed(steps)[:, None]

    def forward(self, codes, steps, noise) -> tuple[torch.Tensor, BlockContext]:
        """Block inputs (N, h*w, width) and the per-position context of the code head."""
        latent_prev = self.latent_before(codes, steps)
        return self.project(latent_prev, noise, steps), self.context(latent_prev, noise, steps)

    def embed(self, batch: dict) -> tuple[torch.Tensor, BlockContext] | None:
        """The packed batch's block inputs and context, in flattened block order; None if none."""
        if "block_codes" not in batch or batch["block_codes"].shape[0] == 0:
            return None
        return self(batch["block_codes"], batch["block_steps"], batch["block_noise"])

    @staticmethod
    def context(latent_prev: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor) -> BlockContext:
        """(N, d, h, w) maps and steps (N,) -> per-position context in block position order."""
        n, d = latent_prev.shape[:2]
        hw = latent_prev[0, 0].numel()
        flat = lambda x: x.flatten(2).transpose(1, 2).reshape(n * hw, d)  # noqa: E731
        return BlockContext(flat(latent_prev), flat(noise.to(latent_prev.dtype)),
                            steps.repeat_interleave(hw))

    def distance_logits(self, hidden: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """-|v_hat - c_k|^2 / tau_t over the frozen codebook, float32, (M, K)."""
        pred = self.head_proj(hidden).float()
        if self.code_head in ("latent", "latent_shared"):
            alphas, betas = self.schedule(pred.device)
            a, b = alphas[ctx.steps][:, None], betas[ctx.steps][:, None]
            v_hat = a * (pred - ctx.latent_prev.float()) + b * ctx.noise.float()
        else:
            v_hat = pred
        codebook = self.quantizer.codebook.float()
        dist_sq = ((v_hat * v_hat).sum(-1, keepdim=True) - 2 * v_hat @ codebook.t()
                   + (codebook * codebook).sum(-1))
        return -dist_sq * self.log_inv_tau[ctx.steps].float().exp()[:, None]

    def code_logits(self, hidden: torch.Tensor, head_codes: torch.Tensor,
                    ctx: BlockContext | None = None) -> torch.Tensor:
        """Logits over the K codes, float32 (M, K): hidden (M, W) at block positions, the code
        rows of the one output head (K, W), and the positions' context (distance/latent heads)."""
        head = self.code_head
        shared = (hidden @ head_codes.t()).float() if head in ("shared", "latent_shared") else None
        if head == "shared":
            return shared
        if ctx is None:
            raise ValueError(f"code_head={head!r} needs the block context")
        logits = self.distance_logits(hidden, ctx)
        return logits + shared if shared is not None else logits


# ----------------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample_codes(model, prompts: list[list[int]], cfg: ImageSamplingConfig,
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
    rows_prompts = prompts + [null_prompt] * b if guided else prompts
    cache, valid, next_pos, _ = run_prompts(model, rows_prompts)
    # Own copies: with CUDA graphs (compile_for_sampling) the prompt pass's outputs live in the
    # graph pool, which the block passes' replays may reuse. The prompt cache is small.
    cache = [(k.clone(), v.clone()) for k, v in cache]
    rows = valid.shape[0]
    h, w = tok.grid
    # The same for every step: computed once, with the padding known from the prompts' lengths
    # (no read from the device, so the host can run ahead into the steps).
    geometry = block_geometry(valid, next_pos, h * w, any_padding(rows_prompts),
                              rope=block_rope(model))
    noise = rdpm_noise(seeds, tok.code_maps, (tok.latent_dim, h, w), device=device)
    if guided:
        noise = torch.cat([noise, noise])  # cond and uncond rows see the same eps_t
    # One Gumbel generator per image: an image's codes do not depend on the rest of its batch.
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    latent = torch.zeros((rows, tok.latent_dim, h, w), device=device)
    # Step t and its guidance weight as tensors: a compiled step (compile_for_sampling) then has
    # one graph for all T steps instead of one per value.
    steps = torch.arange(1, tok.code_maps + 1, device=device)[:, None].repeat(1, rows)
    scales = [torch.tensor(guidance_scale(cfg.cfg_scale, cfg.cfg_schedule, t, tok.code_maps),
                           device=device) if guided else None for t in range(1, tok.code_maps + 1)]
    step_fn = model.objective.compiled_step or guided_block_codes
    # The Gumbel noise's uniform draws, one buffer for all steps: drawn outside the step (one
    # generator per image), turned into codes inside it, where a compiled step fuses them with
    # the logits instead of materialising the noise and the guided logits.
    uniforms = (torch.empty((b, h * w, tok.codebook_size), device=device)
                if cfg.temperature > 0 else None)
    codes = []
    for t in range(1, tok.code_maps + 1):
        if uniforms is not None:
            uniform_draws(uniforms.shape, device, gens, out=uniforms)
        # A new CUDA-graph generation per pass: this pass may overwrite the last pass's outputs
        # (already consumed); a no-op without graphs.
        torch.compiler.cudagraph_mark_step_begin()
        # Cloned: with CUDA graphs the step's output lives in the graph pool, which the next
        # replay overwrites, and every step's codes are kept.
        c_t = step_fn(model, cache, latent, noise[:, t - 1], steps[t - 1], geometry, b,
                      scales[t - 1], cfg.top_k, cfg.top_p, cfg.temperature,
                      uniforms).view(b, h, w).clone()
        if prefix is not None and t <= prefix.shape[1]:
            c_t = prefix[:, t - 1].to(device)
        codes.append(c_t)
        step_latent = model.image_input.quantizer.embed_step(c_t).to(latent.dtype)
        latent = latent + (torch.cat([step_latent, step_latent]) if guided else step_latent)
    return torch.stack(codes, dim=1)


def guided_block_codes(model, cache, latent_prev: torch.Tensor, noise_t: torch.Tensor,
                       steps: torch.Tensor, geometry, b: int, scale: torch.Tensor | None,
                       top_k: int, top_p: float, temperature: float,
                       uniforms: torch.Tensor | None) -> torch.Tensor:
    """One sampling step, logits to codes (b, h*w): the block pass (`block_logits`), guidance of
    rows [:b] against their <null> twins [b:] with weight `scale` (None: unguided), top-k and
    top-p, then Gumbel-max with the step's uniform draws (b, h*w, K). Tensors only vary between
    steps, so `compile_for_sampling` compiles this whole step (pass, code head, guidance, draw)
    as one graph."""
    logits = block_logits(model, cache, None, None, latent_prev, noise_t, steps, geometry)
    return gumbel_argmax(guided_logits(logits, b, scale, top_k, top_p), temperature, uniforms)


@torch.no_grad()
def block_logits(model, cache, valid: torch.Tensor | None, next_pos: torch.Tensor | None,
                 latent_prev: torch.Tensor, noise_t: torch.Tensor, t: int | torch.Tensor,
                 geometry: BlockGeometry | None = None) -> torch.Tensor:
    """Code logits (rows, h*w, K) of the step-t block against the cached prompt; `t` an int or
    the steps (rows,); `geometry` is block_geometry(valid, next_pos, h*w, rope=...), computed
    here when not given."""
    rows, _, h, w = latent_prev.shape
    if geometry is None:
        geometry = block_geometry(valid, next_pos, h * w, rope=block_rope(model))
    steps = t if torch.is_tensor(t) else torch.full((rows,), t, device=latent_prev.device,
                                                    dtype=torch.long)
    x = model.image_input.project(latent_prev, noise_t, steps).to(model.backbone.head_weight.dtype)
    hidden, _ = model.backbone(x, geometry.positions, geometry.mask, kv_prefix=cache,
                               rope=geometry.rope)
    ctx = model.image_input.context(latent_prev, noise_t, steps)
    return model.code_logits(hidden.flatten(0, 1), ctx).view(rows, h * w, -1)


# ---------------------------------------------------------------------------------- objective
class RDPMObjective(ImageObjective):
    """Markov RDPM: k random steps per training document, T recurrent block passes to sample."""

    name = "rdpm"
    CODE_HEADS = CODE_HEADS
    compiled_step = None  # guided_block_codes under torch.compile (compile_sampling_step)

    def __init__(self, vocab: Vocabulary, latent_dim: int, blocks_per_image: int = 1,
                 step_weights=()):
        super().__init__(vocab, latent_dim)
        self.k = blocks_per_image
        self.block_len = vocab.grid[0] * vocab.grid[1]
        self.step_probs = step_probabilities(step_weights, vocab.code_maps)

    def draw_layout(self, rng: np.random.Generator) -> list[int]:
        return draw_steps(rng, self.vocab.code_maps, self.k, self.step_probs)

    def image_length(self, layout: list[int]) -> int:
        return len(layout) * self.block_len

    def image_document(self, prompt: list[int], prompt_targets: bool, codes: torch.Tensor,
                       seed: int, layout: list[int]) -> Document:
        return image_document(self.vocab, prompt, codes, seed, layout, self.latent_dim,
                              prompt_targets)

    def empty_blocks(self) -> dict[str, torch.Tensor]:
        return {"block_codes": torch.zeros((0, self.vocab.code_maps, *self.vocab.grid), dtype=torch.long),
                "block_steps": torch.zeros(0, dtype=torch.long),
                "block_noise": torch.zeros((0, self.latent_dim, *self.vocab.grid),
                                           dtype=torch.float32)}

    def describe(self, doc: Document) -> str:
        codes = doc.blocks[0]["block_codes"]
        steps = [block["block_steps"] for block in doc.blocks]
        return (f"steps {steps}, codes {tuple(codes.shape)}, C_{steps[0]}[0, :8] = "
                f"{codes[steps[0] - 1, 0, :8].tolist()}")

    def build_input(self, tok_cfg: RDPMTokenizerConfig, width: int, code_head: str,
                    init_std: float) -> RDPMBlockInput:
        module = RDPMBlockInput(tok_cfg, width, code_head)
        module.init_weights(init_std)
        return module

    # image_rule: the base class's, bidirectional within the query's own block.

    def sample(self, model, prompts: list[list[int]], cfg: ImageSamplingConfig,
               seeds: list[int] | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        return sample_codes(model, prompts, cfg, seeds, prefix)

    def compile_sampling_step(self, mode: str | None) -> None:
        # The whole step (block input, backbone, code head, guidance, top-k/p, Gumbel-max) in one
        # graph: inductor fuses the float32 code-head, guidance and draw arithmetic, so the guided
        # logits and the noise never reach memory, and with CUDA graphs one replay covers the
        # step, not just the backbone.
        self.compiled_step = torch.compile(guided_block_codes, dynamic=False, mode=mode)
