"""Model FLOPs of a training step, for TFLOP/s and MFU.

    FLOPs = 6 * (P_layers * tokens + W * V * text_targets + H * code_targets + 2d * W * block_tokens)
          + 12 * n_layers * W * seq_len * tokens

P_layers = parameters of the decoder layers (the matmuls every token goes through); the head is
counted where it runs: full vocabulary V at text targets, the K code rows at image targets
(H = W * K for the shared code head, W * d + d * K for the distance/latent heads, their sum
for latent_shared), and the 2d * W block projector only for rdpm (next_token and masked embed
codes by lookup, no matmul). The
attention term is the PaLM convention (QK^T and AV, forward + backward, the full seq_len x seq_len
score matrix, not reduced for the causal/document mask; `causal_halved` gives Megatron's figure,
which drops half of it). Activation recomputation is not counted
(model FLOPs, not hardware FLOPs), nor is the head work on rows without a target (padding,
`<eos>`, the masked objective's visible codes), which the forward runs and ignores rather than
reading the device to drop them. MFU = achieved FLOP/s / (devices x peak FLOP/s).
"""

from __future__ import annotations

from unimodal.model.unified import UnifiedModel


def layer_parameter_count(model: UnifiedModel) -> int:
    """Parameters of the decoder layers; count once per run and pass to `step_flops`."""
    # ZeRO 3 leaves each rank a shard (numel() may be 0); ds_numel is the full count.
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.backbone.model.layers.parameters())


def step_flops(model: UnifiedModel, tokens: int, text_targets: int, code_targets: int,
               block_tokens: int, seq_len: int, layer_params: int | None = None) -> float:
    return (matmul_flops(model, tokens, text_targets, code_targets, block_tokens, layer_params)
            + attention_flops(model, tokens, seq_len))


def matmul_flops(model: UnifiedModel, tokens: int, text_targets: int, code_targets: int,
                 block_tokens: int, layer_params: int | None = None) -> float:
    """The weight matmuls of forward + backward (6 per multiply-add: 2 forward, 4 backward);
    tests/pretraining/test_flops.py checks it against torch's FlopCounterMode for every image
    objective."""
    width = model.backbone.config.hidden_size
    if layer_params is None:
        layer_params = layer_parameter_count(model)
    matmul = (layer_params * tokens + width * model.vocab.size * text_targets
              + code_head_parameters(model) * code_targets
              + block_projector_parameters(model) * block_tokens)
    return 6.0 * matmul


def code_head_parameters(model: UnifiedModel) -> int:
    """Multiply-adds per image target of the code head: W * K (shared), W * d + d * K
    (distance, latent), their sum (latent_shared)."""
    width = model.backbone.config.hidden_size
    d, codes = model.tok_cfg.latent_dim, model.vocab.codebook_size
    return {"shared": width * codes, "latent_shared": width * codes + width * d + d * codes
            }.get(model.cfg.code_head, width * d + d * codes)


def block_projector_parameters(model: UnifiedModel) -> int:
    """Multiply-adds per image position of the block input: rdpm's 2d -> W projector; the token
    objectives embed codes by lookup (no matmul)."""
    if model.cfg.image_objective != "rdpm":
        return 0
    return 2 * model.tok_cfg.latent_dim * model.backbone.config.hidden_size


def attention_flops(model: UnifiedModel, tokens: int, seq_len: int) -> float:
    """QK^T and AV over the full seq_len x seq_len matrix, forward + backward (PaLM's count):
    2 matmuls x 2 FLOPs x 3 (forward, two backward) = 12 per layer, width and key."""
    cfg = model.backbone.config
    return attention_term(cfg.num_hidden_layers, cfg.hidden_size, tokens, seq_len)


def attention_term(layers: int, width: int, tokens: float, seq_len: int) -> float:
    """`attention_flops` from the shape alone (also for the transformers peer)."""
    return 12.0 * layers * width * seq_len * tokens


def causal_halved(flops: float, attention: float) -> float:
    """Megatron's convention: a causal mask computes half of the score matrix, so half of the
    attention term is dropped (LLM Foundry and torchtitan count all of it, as `step_flops` does)."""
    return flops - 0.5 * attention


def dense_lm_flops(layer_params: int, width: int, vocab: int, layers: int, tokens: float,
                   seq_len: int) -> float:
    """A plain causal LM step (the transformers peer of eval/bench_pretrain.py): the same terms,
    with the full-vocabulary head at every position and no block projector."""
    return 6.0 * (layer_params + width * vocab) * tokens + attention_term(layers, width, tokens,
                                                                          seq_len)
