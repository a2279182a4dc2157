"""The plain-transformers peer of eval/bench_pretrain.py (issue 15): a Hugging Face
`LlamaForCausalLM` of the unified model's shape, trained by a plain PyTorch loop and timed the way
the project's loop is timed, so the two can be compared in one process.

Design choices, one line each:
- Same shape: the unified backbone's own `LlamaConfig` (hidden, layers, heads, KV heads,
  intermediate, rope, tied embeddings, the whole ~132k vocabulary); same seq_len, micro-batch
  rows and gradient accumulation as the pretraining config.
- Same optimizer: torch AdamW over optimizer.py's parameter groups, lr, betas, eps, weight decay,
  and gradient clipping at the DeepSpeed config's value.
- One GPU, a plain loop, no DeepSpeed: on one GPU ZeRO has nothing to shard, and a plain loop is
  what a user of transformers would write.
- Precision on CUDA (`precision`): "autocast" = float32 weights and AdamW state, bf16 autocast
  (transformers' Trainer with bf16=True); "bf16" = bf16 weights as DeepSpeed computes, without
  its float32 master copy. On the CPU: float32 (tests only; no timing claims).
- Data: random token ids, whole rows causal (SDPA), labels = inputs (transformers' own loss).
- Timing as the project's log: windows of `window` optimizer steps, those ending after step
  `warmup` kept, median of their tokens/s; the device is synchronised at window edges only.
- FLOPs from flops.py's terms (`dense_lm_flops`): the head runs at every position here.
- `vocab_multiple` rounds the peer's vocabulary up as `resize_token_embeddings(pad_to_multiple_of=)`
  does (the extra rows stay in its softmax, as there); the data and the FLOPs keep the real size.
  The project pads its head for the matmuls (chunked_loss.padded_head), so a peer padded the same
  way compares like with like; 1 (the default) keeps the unified vocabulary as it is.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.flops import attention_term, causal_halved, dense_lm_flops
from unimodal.pretraining.optimizer import param_groups

PRECISIONS = ("autocast", "bf16")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_peer(config: LlamaConfig, device: torch.device, precision: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" and precision == "bf16" else torch.float32
    model = LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation="sdpa",
                                          dtype=dtype)
    return model.to(device).train()


def time_peer(config: LlamaConfig, cfg: PretrainConfig, device: torch.device, steps: int,
              warmup: int, window: int, compile_backend: str = "", precision: str = "autocast",
              peak_tflops: float = 989.0, vocab_multiple: int = 1) -> dict:
    """Train the peer `steps` optimizer steps; tokens/s, TFLOP/s and MFU under both attention
    conventions, the peer's own peak memory. `compile_backend` "" = eager, else torch.compile's
    backend ("inductor" for the real figure). `vocab_multiple`: see the module's notes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
    if vocab_multiple < 1:
        raise ValueError(f"vocab_multiple={vocab_multiple}: must be >= 1")
    vocab = config.vocab_size
    config = copy.deepcopy(config)
    config.vocab_size = -(-vocab // vocab_multiple) * vocab_multiple
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    model = build_peer(config, device, precision)
    layer_params = sum(p.numel() for p in model.model.layers.parameters())
    step_fn = torch.compile(model, backend=compile_backend) if compile_backend else model
    opt = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    clip = cfg.deepspeed_config(1).get("gradient_clipping", 0.0)
    rows, seq, accum = cfg.data.rows_per_batch, cfg.data.seq_len, cfg.train.gradient_accumulation
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (rows, seq), generator=gen).to(device)
               for _ in range(4)]
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if device.type == "cuda" and precision == "autocast" else contextlib.nullcontext())
    rates, loss = [], None
    _sync(device)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        for micro in range(accum):
            ids = batches[(step * accum + micro) % len(batches)]
            with autocast:
                loss = step_fn(input_ids=ids, labels=ids).loss
            (loss / accum).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % window == 0 or step == steps:   # a log step of the project's loop
            _sync(device)
            now = time.perf_counter()
            if step > warmup:
                done = (step - 1) % window + 1
                rates.append(done * accum * rows * seq / (now - start))
            start = now
    tokens_per_s = statistics.median(rates)
    attention = attention_term(config.num_hidden_layers, config.hidden_size, tokens_per_s, seq)
    flops = dense_lm_flops(layer_params, config.hidden_size, vocab,
                           config.num_hidden_layers, tokens_per_s, seq)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" \
        else 0.0
    result = {"tokens_per_s": tokens_per_s, "tflops": flops / 1e12,
              "tflops_causal": causal_halved(flops, attention) / 1e12,
              "attention_tflops": attention / 1e12, "peak_mem_gib": peak, "windows": len(rates),
              "loss": float(loss.detach()), "compile": compile_backend or "eager",
              "precision": precision if device.type == "cuda" else "float32",
              "head_rows": config.vocab_size}
    result["mfu"] = result["tflops"] / peak_tflops
    result["mfu_causal"] = result["tflops_causal"] / peak_tflops
    del step_fn, model, opt, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result
