"""Llama-architecture decoder backbone, plain single-device PyTorch.

Design choices, one line each:
- The architecture is defined by a `transformers.LlamaConfig`; parameter names equal those of
  `LlamaForCausalLM`, so a Hugging Face checkpoint loads with `load_state_dict` and exports back.
- RoPE frequencies come from transformers' own rope init functions (default, llama3 scaling, ...).
- RMSNorm, SwiGLU MLP, grouped-query attention; no biases (Llama).
- Attention takes a mask object: a dense boolean mask (CPU, tests; SDPA) or a flex_attention
  BlockMask (CUDA); both come from the same `mask_mod` (see attention_mask.py).
- Optional key/value prefix: the sampler runs the prompt once and reuses its keys/values for every
  image block; blocks never append to it.
- Optional precomputed RoPE tables (`rope`): an image sampler's passes share their positions, so it
  computes cos/sin once per batch. Inside a compiled step inductor would otherwise recompute cos
  and sin for every element of q and k in every layer (a third of the step's element-wise time).
- `fuse_projections()` (inference only): q/k/v as one matmul and gate/up as one, so that each
  layer reads its normed input twice instead of five times and runs three fewer, wider GEMMs.
  Training keeps the separate Hugging Face-named weights.
- Embedding and head are applied outside (`embed`, `head_weight`), because image positions take a
  projected latent instead of a token embedding and code positions use a slice of the head.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

KV = tuple[torch.Tensor, torch.Tensor]
_compiled_flex = None


def _flex(q, k, v, block_mask, kernel_options):
    global _compiled_flex
    if _compiled_flex is None:  # flex_attention is only fast compiled; compile once per process
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=True,
                          kernel_options=kernel_options or None)


def attend(q, k, v, mask, kernel_options: dict | None = None) -> torch.Tensor:
    """q (B, H, Lq, D); k, v (B, Hkv, Lk, D); mask: BlockMask, bool (B, 1, Lq, Lk) or None.
    `kernel_options`: flex_attention's Triton tile options (BlockMask only)."""
    if isinstance(mask, BlockMask):
        return _flex(q, k, v, mask, kernel_options)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
        inv_freq, self.scaling = ROPE_INIT_FUNCTIONS[rope_type](config, None) \
            if rope_type != "default" else _default_inv_freq(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, L, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.scaling).to(dtype), (emb.sin() * self.scaling).to(dtype)


def _default_inv_freq(config: LlamaConfig):
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    dim = config.head_dim
    # float32 arithmetic, as transformers computes it, so logits match bit for bit in float32.
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        width = config.hidden_size
        self.q_proj = nn.Linear(width, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(width, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(width, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, width, bias=False)
        self.qkv_proj: nn.Linear | None = None  # set by fuse_projections
        self.flex_kernel_options: dict = {}  # set through LlamaBackbone.flex_kernel_options

    def fuse_projections(self) -> None:
        self.qkv_proj = _fused_linear(self.q_proj, self.k_proj, self.v_proj)
        del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, cos, sin, mask, kv_prefix: KV | None = None) -> tuple[torch.Tensor, KV]:
        b, length, _ = x.shape
        if self.qkv_proj is not None:
            kv_width = self.kv_heads * self.head_dim
            q, k, v = self.qkv_proj(x).split([self.heads * self.head_dim, kv_width, kv_width], -1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, length, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_kv = (k, v)
        if kv_prefix is not None:
            k = torch.cat([kv_prefix[0], k], dim=2)
            v = torch.cat([kv_prefix[1], v], dim=2)
        y = attend(q, k, v, mask, self.flex_kernel_options).transpose(1, 2).reshape(b, length, -1)
        return self.o_proj(y), new_kv


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.gate_up_proj: nn.Linear | None = None  # set by fuse_projections

    def fuse_projections(self) -> None:
        self.gate_up_proj = _fused_linear(self.gate_proj, self.up_proj)
        del self.gate_proj, self.up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


def _fused_linear(*linears: nn.Linear) -> nn.Linear:
    """One bias-free nn.Linear whose output is the given linears' outputs side by side."""
    first = linears[0]
    fused = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=False,
                      device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in linears]))
    fused.weight.requires_grad_(first.weight.requires_grad)
    return fused


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, kv_prefix=None) -> tuple[torch.Tensor, KV]:
        h, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_prefix)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class LlamaTrunk(nn.Module):
    """What LlamaForCausalLM calls `model`: embeddings, layers, final norm."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


class LlamaBackbone(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        if getattr(config, "head_dim", None) is None:
            config.head_dim = config.hidden_size // config.num_attention_heads
        self.config = config
        self.model = LlamaTrunk(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.gradient_checkpointing = False

    def init_weights(self, std: float | None = None) -> None:
        std = std if std is not None else self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    @property
    def flex_kernel_options(self) -> dict:
        """flex_attention's Triton tile options in every layer (model.flex_kernel_options)."""
        return self.model.layers[0].self_attn.flex_kernel_options if len(self.model.layers) else {}

    @flex_kernel_options.setter
    def flex_kernel_options(self, options: dict) -> None:
        for layer in self.model.layers:
            layer.self_attn.flex_kernel_options = dict(options)

    def fuse_projections(self) -> None:
        """For inference, in place: each layer's q/k/v and gate/up weights concatenated into one
        matmul each (`qkv_proj`, `gate_up_proj`). The outputs are those of the separate matmuls
        (up to the GEMM's summation order); the state dict's names change, so save or train
        the model before, not after."""
        for layer in self.model.layers:
            if layer.self_attn.qkv_proj is None:
                layer.self_attn.fuse_projections()
            if layer.mlp.gate_up_proj is None:
                layer.mlp.fuse_projections()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    @property
    def head_weight(self) -> torch.Tensor:
        return self.lm_head.weight

    def rope(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary tables (cos, sin), each (B, L, head_dim), of `position_ids` in `dtype`."""
        return self.model.rotary_emb(position_ids, dtype)

    def forward(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor | None, mask,
                kv_prefix: list[KV] | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, list[KV]]:
        """Final-normed hidden states (B, L, width) and each layer's new (k, v). `rope`: the
        tables `self.rope(position_ids, inputs_embeds.dtype)` computed beforehand (then
        `position_ids` is not read)."""
        cos, sin = rope if rope is not None else self.rope(position_ids, inputs_embeds.dtype)
        x, new_kv = inputs_embeds, []
        for i, layer in enumerate(self.model.layers):
            prefix = kv_prefix[i] if kv_prefix is not None else None
            if self.gradient_checkpointing and self.training:
                x, kv = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, prefix,
                                                          use_reentrant=False)
            else:
                x, kv = layer(x, cos, sin, mask, prefix)
            new_kv.append(kv)
        return self.model.norm(x), new_kv
