"""The unified model: one Llama decoder for text tokens and RDPM image code maps.

Design choices, one line each:
- Vocabulary ranges come from `Vocabulary` alone; the head is one matrix over the whole vocabulary.
- The image objective is the seam (`model.image_objective`, `unimodal.model.objectives`): it
  owns what an image position embeds and how its code logits are formed (`self.image_input`),
  its part of the attention rule (`image_rule`) and sampling; the backbone, the vocabulary and
  the loss are shared. The default `rdpm` embeds a block position of step t as
  `proj(concat(z'_{t-1}, eps_t)) + step_embed[t]` and offers the code heads of `model.code_head`
  (shared | distance | latent | latent_shared; see objectives/rdpm.py); `next_token` and
  `masked` (T = 1 codes) use the shared head only.
- Text positions embed token ids.
- One cross-entropy over all target positions: full-vocabulary logits at text positions, and at
  image positions a softmax over the K codes only (cheaper, and no text id can win). The forward
  reads nothing back from the device: positions are picked by index tensors whose sizes are known
  on the host, and positions without a target are ignored rather than dropped.
  `model.loss_chunk_tokens` > 0 computes both in chunks of tokens (chunked_loss.py), so the
  (tokens x vocabulary) logits are never held at once; same loss and gradients.
  `model.compile_loss` runs the text head and its cross-entropy under torch.compile instead,
  which keeps no float32 logits (1.21x tokens/s on uni_1b, README "Performance").
- Named sizes: tiny (CPU tests), d12 / d16 / d20 (the RDPM paper's Table 1: width = 64 * depth,
  heads = depth), 1b (Llama-3.2-1B shape, so a local Llama-3.2-1B checkpoint can be extended).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import LlamaConfig

from unimodal.config import ConfigError
from unimodal.model.attention_mask import build_attention_mask
from unimodal.model.chunked_loss import (HEAD_ROWS_MULTIPLE, chunked_cross_entropy_sum,
                                         linear_cross_entropy_sum, padded_head)
from unimodal.model.document import IGNORE
from unimodal.model.float8 import check_recipe
from unimodal.model.llama import LlamaBackbone
from unimodal.model.objectives import ImageObjective, build_objective, objective_class
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig, load_tokenizer_config


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


# The flex_attention kernel options a config may set (torch's Triton templates read them).
FLEX_KERNEL_OPTIONS = frozenset(
    [f"fwd_{k}" for k in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages")]
    + [f"bwd_{k}" for k in ("BLOCK_M1", "BLOCK_N1", "BLOCK_M2", "BLOCK_N2", "num_warps",
                            "num_stages")])


@dataclass
class UnifiedModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    vocab: VocabularyConfig = field(default_factory=VocabularyConfig)
    image_tokenizer: str = ""             # folder written by train_rdpm.py (frozen codebook, decoder)
    image_objective: str = "rdpm"         # a name of IMAGE_OBJECTIVES (unimodal.model.objectives)
    code_head: str = "shared"             # rdpm: shared | distance | latent | latent_shared
    loss_chunk_tokens: int = 0            # head + cross-entropy over chunks of this many targets
                                          # (never all logits at once); 0 = all targets in one go
    compile_block_mask: bool = False      # CUDA: build the flex_attention BlockMask with a compiled
                                          # create_block_mask (a fixed Python cost per batch when
                                          # not); same mask, not yet timed on a GPU, so off
    # CUDA: flex_attention's Triton tile options, e.g. {fwd_num_warps: 8, bwd_BLOCK_M1: 32}
    # (forward BLOCK_M/BLOCK_N/num_warps/num_stages with fwd_, backward BLOCK_M1/BLOCK_N1/
    # BLOCK_M2/BLOCK_N2/num_warps/num_stages with bwd_); {} = torch's defaults for the GPU
    flex_kernel_options: dict[str, int] = field(default_factory=dict)
    # Training: the decoder layers' matmuls in FP8 (torchao Float8Linear; unimodal/model/float8.py):
    # "" = off, "tensorwise" or "rowwise" scales. Needs the fp8 extra and FP8 tensor cores to pay.
    fp8: str = ""
    # CUDA: the head matmul + cross-entropy of non-block targets under torch.compile, which
    # fuses the float32 cast, log-softmax and its gradient (no float32 logits kept)
    compile_loss: bool = False

    def validate(self, prefix: str = "model") -> None:
        check_recipe(self.fp8, f"{prefix}.fp8")
        if self.loss_chunk_tokens < 0:
            raise ConfigError(f"{prefix}.loss_chunk_tokens={self.loss_chunk_tokens}: must be >= 0 "
                              "(0 = the whole loss in one go)")
        for key, value in self.flex_kernel_options.items():
            if key not in FLEX_KERNEL_OPTIONS or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{prefix}.flex_kernel_options.{key}={value!r}: the keys are "
                                  f"{sorted(FLEX_KERNEL_OPTIONS)}, each a positive int")
        heads = objective_class(self.image_objective, f"{prefix}.image_objective").CODE_HEADS
        if self.code_head not in heads:
            raise ConfigError(f"{prefix}.code_head={self.code_head!r}: choose one of {heads}")

    def resolve_image_geometry(self, prefix: str = "model") -> None:
        """Fill vocab.codebook_size / code_maps / grid from the image tokenizer's saved config
        (the one source of truth: T is the tokenizer's `code_maps`), and each further modality's
        from its `tokenizer` when it names one; a value the config states must agree with it."""
        _fill_geometry(self.vocab, load_tokenizer_config(self.image_tokenizer),
                       f"{prefix}.vocab", f"the image tokenizer {self.image_tokenizer}")
        for i, modality in enumerate(self.vocab.modalities):
            if not modality.tokenizer:
                continue
            where = f"{prefix}.vocab.modalities[{i}]"
            try:
                tok = load_tokenizer_config(modality.tokenizer)
            except FileNotFoundError as err:
                raise ConfigError(f"{where}.tokenizer={modality.tokenizer!r}: {err}") from err
            if tok.modality == "image":
                raise ConfigError(f"{where}.tokenizer={modality.tokenizer!r} is an image "
                                  "tokenizer; a further modality takes an audio or video one")
            if tok.noise_scale > 0:
                warnings.warn(f"{where}.tokenizer={modality.tokenizer!r} was trained with "
                              f"model.noise_scale={tok.noise_scale}: its codes depend on noise that "
                              "a next-token document never shows the model, so most of them cannot "
                              "be learned (see its metrics.json per_step.seed_agreement); train it "
                              "with model.noise_scale=0", stacklevel=2)
            _fill_geometry(modality, tok, where, f"its tokenizer {modality.tokenizer}")


def _fill_geometry(target, tok: RDPMTokenizerConfig, prefix: str, source: str) -> None:
    """Set target's codebook_size / code_maps / grid from `tok` where 0 / []; else check them."""
    for key, theirs in (("codebook_size", tok.codebook_size), ("code_maps", tok.code_maps),
                        ("grid", list(tok.grid))):
        ours = getattr(target, key)
        if not ours:
            setattr(target, key, theirs)
        elif list(ours) != theirs if key == "grid" else ours != theirs:
            raise ConfigError(f"{prefix}.{key}={ours!r} but {source} has {theirs!r}; drop the key "
                              "(it is read from the tokenizer) or use the matching tokenizer")


def head_cross_entropy_sums(hidden: torch.Tensor, weight: torch.Tensor,
                            group_targets: list[torch.Tensor],
                            rows_multiple: int = HEAD_ROWS_MULTIPLE) -> list[torch.Tensor]:
    """Summed cross-entropy of each target group over one output-head matmul (float32 logits,
    IGNORE targets add nothing).

    The head is padded with zero rows to a multiple of `rows_multiple` and the padded logits
    are dropped before the softmax: the loss is unchanged, but the logits' rows become 16-byte
    aligned. A vocabulary size that is not a multiple of 8 (uni_1b: 133,102 ids) otherwise sends
    cuBLAS on Hopper to an sm80 fallback kernel for these matmuls (README "Pretraining
    throughput"; 1 = no padding, eval/bench_head_loss.py's baseline)."""
    vocab = weight.shape[0]
    logits = F.linear(hidden, padded_head(weight, rows_multiple))[:, :vocab].float()
    return [F.cross_entropy(logits, targets, reduction="sum", ignore_index=IGNORE)
            for targets in group_targets]


@functools.cache
def compiled_head_cross_entropy_sums():
    # The number of non-block rows changes from batch to batch: dynamic from the start, so that
    # it compiles once.
    return torch.compile(head_cross_entropy_sums, dynamic=True)


def split_by_modality(targets: torch.Tensor, text_sel: torch.Tensor, further) -> dict:
    """The non-block targets (text_sel) by the range their target falls in: {"text": ...,
    name: ...} for each further modality; image-only: {"text": text_sel} itself."""
    groups, rest = {}, text_sel
    for modality in further:
        groups[modality.name] = text_sel & modality.is_code(targets)
        rest = rest & ~groups[modality.name]
    return {"text": rest, **groups}


class UnifiedModel(nn.Module):
    def __init__(self, cfg: UnifiedModelConfig, vocab: Vocabulary, tok_cfg: RDPMTokenizerConfig,
                 hf_config: LlamaConfig | None = None):
        super().__init__()
        vocab.check_image_tokenizer(tok_cfg.codebook_size, tok_cfg.code_maps, list(tok_cfg.grid))
        self.cfg, self.vocab, self.tok_cfg = cfg, vocab, tok_cfg
        hf_config = hf_config or cfg.backbone.to_hf(vocab.size)
        if hf_config.vocab_size != vocab.size:
            raise ValueError(f"backbone vocab_size={hf_config.vocab_size} but the vocabulary has "
                             f"{vocab.size} ids")
        self.backbone = LlamaBackbone(hf_config)
        self.backbone.flex_kernel_options = dict(cfg.flex_kernel_options)
        self.backbone.init_weights()
        cfg.validate()
        self.objective: ImageObjective = build_objective(cfg.image_objective, vocab,
                                                         tok_cfg.latent_dim)
        self.image_input = self.objective.build_input(tok_cfg, hf_config.hidden_size,
                                                      cfg.code_head, hf_config.initializer_range)

    @property
    def code_slice(self) -> slice:
        return self.vocab.modality("image").code_slice

    def load_codebook(self, tokenizer_state: dict[str, torch.Tensor]) -> None:
        """Copy the image tokenizer's weights the image objective keeps frozen (RDPM: the
        quantizer's codebook and shared bias)."""
        self.image_input.load_tokenizer(tokenizer_state)

    def code_logits(self, hidden: torch.Tensor, ctx=None) -> torch.Tensor:
        """Logits over the K image codes only, float32: hidden (M, W) at image positions, and
        their context (the objective's; RDPM's distance and latent heads need it)."""
        return self.image_input.code_logits(hidden, self.backbone.head_weight[self.code_slice], ctx)

    def embed_sequence(self, batch: dict, block_rows: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, object | None]:
        """Input embeddings (B, L, W) and the image context (None when there are no images).
        `block_rows`: the flattened image positions in order (`UnifiedModel.block_rows`; computed
        if None)."""
        ids = batch["input_ids"]
        emb = self.backbone.embed(ids.clamp(0, self.vocab.size - 1))
        ctx = None
        image = self.image_input.embed(batch)
        if image is not None:
            blocks, ctx = image
            if block_rows is None:
                block_rows = self.block_rows(batch)[0]
            # index_copy, not masked_scatter: the latter's backward is a masked_select, whose
            # output size made the host wait for the GPU once per micro-batch.
            flat = emb.flatten(0, 1).index_copy(0, block_rows,
                                                blocks.reshape(-1, emb.shape[-1]).to(emb.dtype))
            emb = flat.view_as(emb)
        return emb, ctx

    def block_rows(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The flattened image positions and the other positions, each in flattened order (the
        order of the image inputs and context rows). No device reads (no .any(), no boolean
        indexing, whose output size waits for the GPU): a stable sort puts the image positions
        first, and their count is a host int from the block tensors' shapes."""
        is_block = batch["block_ids"].flatten() >= 0
        n_block = self.objective.block_positions(batch)
        order = torch.argsort((~is_block).to(torch.uint8), stable=True)
        return order[:n_block], order[n_block:]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Packed batch -> {"loss", "text_loss", "image_loss", "text_tokens", "image_tokens"},
        plus "{name}_loss" and "{name}_tokens" for each code modality after image (audio, video):
        its codes are scored by the full head at non-block positions, and split from text by the
        vocabulary's ranges (image-only vocabularies compute exactly what they did before).

        batch: input_ids, position_ids, doc_ids, block_ids, targets (B, L) long, -100 = no target;
        plus the image objective's block keys (RDPM: block_codes (N, T, h, w), block_steps (N,),
        block_noise (N, d, h, w) for the N blocks, in the order their positions appear in the
        flattened batch).
        """
        mask = build_attention_mask(batch["doc_ids"], batch["block_ids"], self.objective.image_rule,
                                    compiled=self.cfg.compile_block_mask)
        block_rows, other_rows = self.block_rows(batch)
        n_block = block_rows.numel()
        emb, ctx = self.embed_sequence(batch, block_rows)
        hidden, _ = self.backbone(emb, batch["position_ids"], mask)
        hidden, targets = hidden.flatten(0, 1), batch["targets"].flatten()
        is_block = batch["block_ids"].flatten() >= 0
        text_sel, code_sel = (targets >= 0) & ~is_block, (targets >= 0) & is_block
        # Positions without a target stay in the row sets and are ignored by the cross-entropy.
        zero = hidden.new_zeros((), dtype=torch.float32)
        code_sum = zero
        chunk = self.cfg.loss_chunk_tokens
        head_sel = split_by_modality(targets, text_sel, self.vocab.modalities[1:])
        head_sums = dict.fromkeys(head_sel, zero)
        if other_rows.numel():
            text_hidden = hidden.index_select(0, other_rows)
            # image-only vocabularies: one group, "text"
            group_targets = [torch.where(sel, targets, IGNORE).index_select(0, other_rows)
                             for sel in head_sel.values()]
            if chunk:
                sums = [linear_cross_entropy_sum(text_hidden, self.backbone.head_weight, t, chunk)
                        for t in group_targets]
            else:
                head_loss = (compiled_head_cross_entropy_sums() if self.cfg.compile_loss
                             else head_cross_entropy_sums)
                sums = head_loss(text_hidden, self.backbone.head_weight, group_targets)
            head_sums = dict(zip(head_sel, sums))
        if n_block:
            code_hidden = hidden.index_select(0, block_rows)
            code_targets = torch.where(code_sel, targets - self.vocab.code_offset,
                                       IGNORE).index_select(0, block_rows)
            if chunk:
                code_sum = chunked_cross_entropy_sum(self.code_logits, code_hidden, code_targets,
                                                     ctx, chunk)
            else:
                logits = self.code_logits(code_hidden, ctx)
                code_sum = F.cross_entropy(logits, code_targets, reduction="sum",
                                           ignore_index=IGNORE)
        counts = {name: sel.sum() for name, sel in head_sel.items()}
        n_text, n_code = counts.pop("text"), code_sel.sum()
        text_sum = head_sums.pop("text")
        total = sum(counts.values(), n_text + n_code).clamp_min(1)
        out = {"loss": (sum(head_sums.values(), text_sum) + code_sum) / total,
               "text_loss": (text_sum / n_text.clamp_min(1)).detach(),
               "image_loss": (code_sum / n_code.clamp_min(1)).detach(),
               "text_tokens": n_text.detach(), "image_tokens": n_code.detach()}
        for name, n in counts.items():
            out[f"{name}_loss"] = (head_sums[name] / n.clamp_min(1)).detach()
            out[f"{name}_tokens"] = n.detach()
        return out

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
