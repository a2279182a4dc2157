"""The unified model: one Llama decoder for text tokens and RDPM image code maps.

Design choices, one line each:
- Vocabulary ranges come from `Vocabulary` alone; the head is one matrix over the whole vocabulary.
- Text positions embed token ids; an image block position t embeds
  `block_proj(concat(z'_{t-1}, eps_t)) + step_embed[t]` (the RDPM image objective, `RDPMBlockInput`).
- z'_{t-1} is rebuilt inside the model from the codes C_1..C_{t-1} with a frozen copy of the image
  tokenizer's codebook and shared bias conv; eps_t arrives from the data pipeline (regenerated
  from the sample's seed by `rdpm_noise`, in loader workers).
- One cross-entropy over all target positions: full-vocabulary logits at text positions, and at
  block positions a softmax over the K codes only (cheaper, and no text id can win).
- Code head (`model.code_head`), how block logits are formed:
  `shared` = the code slice of the one head (a softmax must learn the codebook's nearest-neighbour
  map itself); `distance` = predict v_t, logits -|v_hat - c_k|^2 / tau_t over the frozen codebook;
  `latent` = predict the clean latent z_hat and form v_hat = a_t (z_hat - z'_{t-1}) + b_t eps_t
  exactly as Algorithm 1 does, so the network learns only image content while the known noise
  and residual enter analytically (the quantizer's decision rule, x0-prediction as in diffusion);
  `latent_shared` = the latent head's logits plus the shared head's code slice: the distance term
  is a unimodal (Gaussian-like) guess around z_hat, the shared term can add other modes.
- The image objective is a seam: `RDPMBlockInput` builds block inputs; a raster next-token or
  MaskGIT objective would swap that module and the sequence builder, not the backbone or the loss.
- Named sizes: tiny (CPU tests), d12 / d16 / d20 (the RDPM paper's Table 1: width = 64 * depth,
  heads = depth), 1b (Llama-3.2-1B shape, so a local Llama-3.2-1B checkpoint can be extended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import LlamaConfig

from unimodal.config import ConfigError
from unimodal.model.attention_mask import build_attention_mask
from unimodal.model.llama import LlamaBackbone
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import (RDPMTokenizerConfig, build_quantizer,
                                             load_tokenizer_config)


def _ffn(width: int) -> int:
    """SwiGLU hidden size: 8/3 * width rounded up to a multiple of 256 (Llama's rule)."""
    return 256 * ((8 * width // 3 + 255) // 256)


@dataclass
class BackboneConfig:
    size: str = "tiny"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 256
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    base_model: str = ""                  # local HF Llama checkpoint folder to extend; "" = scratch

    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4,
                     intermediate_size=256),
        "d12": dict(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=12,
                    intermediate_size=_ffn(768)),
        "d16": dict(hidden_size=1024, num_layers=16, num_heads=16, num_kv_heads=16,
                    intermediate_size=_ffn(1024)),
        "d20": dict(hidden_size=1280, num_layers=20, num_heads=20, num_kv_heads=20,
                    intermediate_size=_ffn(1280)),
        # Llama-3.2-1B: 16 layers, width 2048, 32 heads / 8 KV heads, FFN 8192, tied embeddings.
        "1b": dict(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8,
                   intermediate_size=8192, rope_theta=500000.0, max_position_embeddings=131072,
                   tie_word_embeddings=True),
    }

    def validate(self, prefix: str = "model.backbone") -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{prefix}.hidden_size={self.hidden_size} is not divisible by "
                              f"{prefix}.num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{prefix}.num_heads must be a multiple of {prefix}.num_kv_heads")

    def to_hf(self, vocab_size: int) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_word_embeddings,
            initializer_range=self.initializer_range, attention_bias=False, mlp_bias=False)


@dataclass
class UnifiedModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    vocab: VocabularyConfig = field(default_factory=VocabularyConfig)
    image_tokenizer: str = ""             # folder written by train_rdpm.py (frozen codebook, decoder)
    code_head: str = "shared"             # shared | distance | latent | latent_shared (module docstring)

    def validate(self, prefix: str = "model") -> None:
        if self.code_head not in CODE_HEADS:
            raise ConfigError(f"{prefix}.code_head={self.code_head!r}: choose one of {CODE_HEADS}")

    def resolve_image_geometry(self, prefix: str = "model") -> None:
        """Fill vocab.codebook_size / steps / grid from the image tokenizer's saved config (the
        one source of truth); a value the config states must agree with it."""
        tok = load_tokenizer_config(self.image_tokenizer)
        for key, theirs in (("codebook_size", tok.codebook_size), ("steps", tok.steps),
                            ("grid", list(tok.grid))):
            ours = getattr(self.vocab, key)
            if not ours:
                setattr(self.vocab, key, theirs)
            elif list(ours) != theirs if key == "grid" else ours != theirs:
                raise ConfigError(f"{prefix}.vocab.{key}={ours!r} but the image tokenizer "
                                  f"{self.image_tokenizer} has {theirs!r}; drop the key (it is "
                                  "read from the tokenizer) or use the matching tokenizer")


CODE_HEADS = ("shared", "distance", "latent", "latent_shared")


@dataclass
class BlockContext:
    """What the code head needs at each block position, flattened in block position order."""
    latent_prev: torch.Tensor             # z'_{t-1}, (M, d)
    noise: torch.Tensor                   # eps_t, (M, d)
    steps: torch.Tensor                   # t in 1..T, (M,)

    def select(self, mask: torch.Tensor) -> "BlockContext":
        return BlockContext(self.latent_prev[mask], self.noise[mask], self.steps[mask])


class RDPMBlockInput(nn.Module):
    """The RDPM image objective's own parts: block inputs proj(concat(z'_{t-1}, eps_t)) +
    step_embed[t], and (for the distance/latent code heads) the code logits."""

    def __init__(self, tok_cfg: RDPMTokenizerConfig, width: int, code_head: str = "shared"):
        super().__init__()
        self.code_head = code_head
        self.steps, self.latent_dim = tok_cfg.steps, tok_cfg.latent_dim
        # Frozen copy of the tokenizer's code -> latent map (codebook + shared bias conv).
        self.quantizer = build_quantizer(tok_cfg)
        self.quantizer.requires_grad_(False)
        self.proj = nn.Linear(2 * tok_cfg.latent_dim, width)
        self.step_embed = nn.Embedding(tok_cfg.steps + 1, width)  # index t = 1..T
        if code_head != "shared":
            self.head_proj = nn.Linear(width, tok_cfg.latent_dim)  # -> v_hat or z_hat
            # log(1 / tau_t) per step (index t = 1..T): how sharp the softmax over distances is.
            self.log_inv_tau = nn.Parameter(torch.zeros(tok_cfg.steps + 1))
            # a_t, b_t in float32 per device (not buffers: a bf16 model would round them).
            self._schedule: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

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


class UnifiedModel(nn.Module):
    def __init__(self, cfg: UnifiedModelConfig, vocab: Vocabulary, tok_cfg: RDPMTokenizerConfig,
                 hf_config: LlamaConfig | None = None):
        super().__init__()
        vocab.check_image_tokenizer(tok_cfg.codebook_size, tok_cfg.steps, list(tok_cfg.grid))
        self.cfg, self.vocab, self.tok_cfg = cfg, vocab, tok_cfg
        hf_config = hf_config or cfg.backbone.to_hf(vocab.size)
        if hf_config.vocab_size != vocab.size:
            raise ValueError(f"backbone vocab_size={hf_config.vocab_size} but the vocabulary has "
                             f"{vocab.size} ids")
        self.backbone = LlamaBackbone(hf_config)
        self.backbone.init_weights()
        cfg.validate()
        self.image_input = RDPMBlockInput(tok_cfg, hf_config.hidden_size, cfg.code_head)
        nn.init.normal_(self.image_input.proj.weight, std=hf_config.initializer_range)
        nn.init.zeros_(self.image_input.proj.bias)
        nn.init.normal_(self.image_input.step_embed.weight, std=hf_config.initializer_range)

    @property
    def code_slice(self) -> slice:
        return slice(self.vocab.code_offset, self.vocab.code_offset + self.vocab.codebook_size)

    def load_codebook(self, tokenizer_state: dict[str, torch.Tensor]) -> None:
        """Copy the image tokenizer's quantizer weights (codebook, shared bias) into the frozen copy."""
        prefix = "quantizer."
        state = {k[len(prefix):]: v for k, v in tokenizer_state.items() if k.startswith(prefix)}
        self.image_input.quantizer.load_state_dict(state)

    def code_logits(self, hidden: torch.Tensor, ctx: BlockContext | None = None) -> torch.Tensor:
        """Logits over the K image codes only, float32: hidden (M, W) at block positions, and
        their context (needed by the distance and latent heads)."""
        head = self.cfg.code_head
        shared = (hidden @ self.backbone.head_weight[self.code_slice].t()).float() \
            if head in ("shared", "latent_shared") else None
        if head == "shared":
            return shared
        if ctx is None:
            raise ValueError(f"code_head={head!r} needs the block context")
        logits = self.image_input.distance_logits(hidden, ctx)
        return logits + shared if shared is not None else logits

    def embed_sequence(self, batch: dict) -> tuple[torch.Tensor, BlockContext | None]:
        """Input embeddings (B, L, W) and the block context (None when there are no blocks)."""
        ids = batch["input_ids"]
        emb = self.backbone.embed(ids.clamp(0, self.vocab.size - 1))
        is_block = batch["block_ids"] >= 0
        ctx = None
        if "block_codes" in batch and batch["block_codes"].shape[0] > 0:
            blocks, ctx = self.image_input(batch["block_codes"], batch["block_steps"],
                                           batch["block_noise"])
            emb = emb.masked_scatter(is_block[..., None], blocks.to(emb.dtype))
        return emb, ctx

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Packed batch -> {"loss", "text_loss", "image_loss", "text_tokens", "image_tokens"}.

        batch: input_ids, position_ids, doc_ids, block_ids, targets (B, L) long, -100 = no target;
        block_codes (N, T, h, w), block_steps (N,), block_noise (N, d, h, w) for the N blocks, in
        the order their positions appear in the flattened batch.
        """
        mask = build_attention_mask(batch["doc_ids"], batch["block_ids"])
        emb, ctx = self.embed_sequence(batch)
        hidden, _ = self.backbone(emb, batch["position_ids"], mask)
        targets, is_block = batch["targets"], batch["block_ids"] >= 0
        text_sel, code_sel = (targets >= 0) & ~is_block, (targets >= 0) & is_block
        zero = hidden.new_zeros((), dtype=torch.float32)
        text_sum, code_sum = zero, zero
        if text_sel.any():
            logits = F.linear(hidden[text_sel], self.backbone.head_weight).float()
            text_sum = F.cross_entropy(logits, targets[text_sel], reduction="sum")
        if code_sel.any():
            # Block positions in flattened order are the order of the context rows.
            in_block = code_sel[is_block]
            code_targets = targets[code_sel] - self.vocab.code_offset
            logits = self.code_logits(hidden[code_sel],
                                      ctx.select(in_block) if ctx is not None else None)
            code_sum = F.cross_entropy(logits, code_targets, reduction="sum")
        n_text, n_code = text_sel.sum(), code_sel.sum()
        total = (n_text + n_code).clamp_min(1)
        return {"loss": (text_sum + code_sum) / total,
                "text_loss": (text_sum / n_text.clamp_min(1)).detach(),
                "image_loss": (code_sum / n_code.clamp_min(1)).detach(),
                "text_tokens": n_text.detach(), "image_tokens": n_code.detach()}

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
