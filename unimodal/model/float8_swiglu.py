"""The sampler's gate/up matmul and SwiGLU as one FP8 Triton kernel (`fp8=rowwise`, CUDA).

With torchao's Float8Linear (float8.py) a decoder layer's MLP runs the fused gate/up projection as
one cuBLAS FP8 GEMM that writes (rows, 2 x intermediate) in bf16, then a separate SwiGLU kernel
that reads all of it back to write (rows, intermediate). At batch 256 with CFG that is 131k rows x
4096 bf16 = 1 GiB written and read again per layer and block pass, memory traffic on a GPU whose
FP8 GEMM is not the bottleneck (README, "Performance"). Here the GEMM accumulates a gate tile and
the up tile of the same columns from one load of the input tile, and its epilogue writes
silu(gate) * up alone.

The scaling is torchao's rowwise recipe, with its own functions: the input's rows and the
weight's output rows each get a power-of-two scale from their absolute maximum, and values
saturate at e4m3's range. The weight is quantized once (sampling does not change it); the input
is quantized in the compiled step, where inductor fuses it with the RMSNorm before it. The
kernel keeps gate and up in float32 up to the SwiGLU, where torchao's path rounds both to bf16
first, so the two agree to bf16 rounding, not bit for bit (FP8 codes already differ from bf16's).

Inference only: no backward, and the state dict holds FP8 buffers. On the CPU the op computes
the same product in float32 (tests; the kernel itself is checked there under Triton's
interpreter, `TRITON_INTERPRET=1`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

E4M3 = torch.float8_e4m3fn

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch without Triton: the op's float32 path still runs
    triton = None


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (rows, k) -> (e4m3 data, float32 dequantization multipliers (rows, 1)), with torchao's
    rowwise-recipe scales (power of two, from each row's absolute maximum)."""
    from torchao.float8.float8_utils import amax_to_scale, to_fp8_saturated

    scale = amax_to_scale(x.abs().amax(-1, keepdim=True), E4M3, round_scales_to_power_of_2=True)
    return to_fp8_saturated(x.to(torch.float32) * scale, E4M3), scale.reciprocal()


def fp8_swiglu_reference(x, x_inv_scale, weight, weight_inv_scale) -> torch.Tensor:
    """What the kernel computes, in float32: silu(g) * u for [g | u] = dequant(x) @ dequant(w)^T."""
    hidden = (x.float() @ weight.float().t()) * x_inv_scale.view(-1, 1) * weight_inv_scale.view(1, -1)
    gate, up = hidden.chunk(2, dim=-1)
    return (F.silu(gate) * up).to(torch.bfloat16)


if triton is not None:
    @triton.jit
    def _fp8_swiglu_kernel(x_ptr, x_inv_ptr, w_ptr, w_inv_ptr, out_ptr, M, N, K,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                           GROUP_M: tl.constexpr, PERSISTENT: tl.constexpr,
                           WARP_SPECIALIZE: tl.constexpr, TMA: tl.constexpr):
        # x (M, K) and w (2N, K) row-major e4m3: w's rows [0, N) are the gate's, [N, 2N) the up's.
        # PERSISTENT: a grid of about one program per SM, each looping over tiles, so that the
        # next tile's loads overlap this tile's epilogue (K is short: 768 is 12 steps of 64).
        # TMA: tiles move through tensor descriptors (Hopper's copy engine; out-of-range reads
        # give zeros and out-of-range writes are dropped) instead of masked pointer arithmetic.
        tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        steps = tl.cdiv(K, BLOCK_K)
        ks = tl.arange(0, BLOCK_K)
        if TMA:
            x_desc = tl.make_tensor_descriptor(x_ptr, shape=[M, K], strides=[K, 1],
                                               block_shape=[BLOCK_M, BLOCK_K])
            # the up rows of a gate tile that runs past N are read but land in columns >= N,
            # which the output descriptor drops
            w_desc = tl.make_tensor_descriptor(w_ptr, shape=[2 * N, K], strides=[K, 1],
                                               block_shape=[BLOCK_N, BLOCK_K])
            out_desc = tl.make_tensor_descriptor(out_ptr, shape=[M, N], strides=[N, 1],
                                                 block_shape=[BLOCK_M, BLOCK_N])
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0),
                             flatten=PERSISTENT, warp_specialize=WARP_SPECIALIZE):
            # grouped order: GROUP_M row tiles share the weight tiles while they are in L2
            group = tile // (GROUP_M * tiles_n)
            first_m = group * GROUP_M
            group_rows = min(tiles_m - first_m, GROUP_M)
            pid_m = first_m + (tile % (GROUP_M * tiles_n)) % group_rows
            pid_n = (tile % (GROUP_M * tiles_n)) // group_rows
            rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
            cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            row_ok, col_ok = rows < M, cols < N
            gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for step in range(steps):
                if TMA:
                    a = x_desc.load([pid_m * BLOCK_M, step * BLOCK_K])
                    gate = tl.dot(a, w_desc.load([pid_n * BLOCK_N, step * BLOCK_K]).T, gate)
                    up = tl.dot(a, w_desc.load([N + pid_n * BLOCK_N, step * BLOCK_K]).T, up)
                else:
                    k = step * BLOCK_K + ks
                    k_ok = k < K
                    a = tl.load(x_ptr + rows[:, None] * K + k[None, :],
                                mask=row_ok[:, None] & k_ok[None, :], other=0.0)
                    w_ok = k_ok[:, None] & col_ok[None, :]
                    gate_tile = w_ptr + cols[None, :] * K + k[:, None]  # (BLOCK_K, BLOCK_N) of w^T
                    gate = tl.dot(a, tl.load(gate_tile, mask=w_ok, other=0.0), gate)
                    up = tl.dot(a, tl.load(gate_tile + N * K, mask=w_ok, other=0.0), up)
            x_inv = tl.load(x_inv_ptr + rows, mask=row_ok, other=0.0)[:, None]
            gate = gate * x_inv * tl.load(w_inv_ptr + cols, mask=col_ok, other=0.0)[None, :]
            up = up * x_inv * tl.load(w_inv_ptr + N + cols, mask=col_ok, other=0.0)[None, :]
            out = (gate * tl.sigmoid(gate) * up).to(tl.bfloat16)
            if TMA:
                out_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], out)
            else:
                tl.store(out_ptr + rows[:, None] * N + cols[None, :], out,
                         mask=row_ok[:, None] & col_ok[None, :])

    def _tile(m, n, k, warps, stages, persistent=False, warp_specialize=False):
        return triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8,
                              "PERSISTENT": persistent, "WARP_SPECIALIZE": warp_specialize,
                              "TMA": False}, num_warps=warps, num_stages=stages)

    # Tiles tried on the first call of each shape: the best three of eval/bench_fp8_swiglu.py's
    # H100 sweeps (README). Persistent and warp-specialized programs were slower there.
    _TILES = [_tile(128, 128, 64, 8, 3), _tile(128, 128, 64, 8, 4), _tile(128, 128, 128, 8, 3)]
    _fp8_swiglu_tuned = triton.autotune(_TILES, key=["M", "N", "K"])(_fp8_swiglu_kernel)


def _use_torch_memory_for_descriptors() -> None:
    """Tensor descriptors made inside a kernel need scratch memory from the launcher: take it
    from torch's caching allocator. Used by fixed-tile launches only (the sweep); the autotuned
    tiles do not use TMA."""
    def alloc(size: int, alignment: int, stream):
        return torch.empty(size, device="cuda", dtype=torch.int8)

    triton.set_allocator(alloc)


def _programs(m: int, n: int, meta: dict, device) -> int:
    tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])
    if not meta.get("PERSISTENT"):
        return tiles
    # one program per SM; 3 on the CPU interpreter, so that its programs also loop over tiles
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 3
    return min(tiles, sms)


def launch_fp8_swiglu(x, x_inv_scale, weight, weight_inv_scale, out, tile: dict | None = None):
    """Run the Triton kernel into `out` (M, N) bf16. `tile`: fixed kernel options (BLOCK_M,
    BLOCK_N, BLOCK_K, GROUP_M, PERSISTENT, WARP_SPECIALIZE, TMA, num_warps, num_stages) instead
    of autotuning, e.g. for Triton's CPU interpreter, which cannot time, or for a sweep."""
    m, k = x.shape
    n = weight.shape[0] // 2

    def grid(meta):
        return (_programs(m, n, meta, x.device),)

    if tile is None:
        _fp8_swiglu_tuned[grid](x, x_inv_scale, weight, weight_inv_scale, out, m, n, k)
    else:
        tile = {"PERSISTENT": False, "WARP_SPECIALIZE": False, "TMA": False, **tile}
        if tile["TMA"] and x.is_cuda:
            _use_torch_memory_for_descriptors()
        _fp8_swiglu_kernel[grid](x, x_inv_scale, weight, weight_inv_scale, out, m, n, k, **tile)
    return out


@torch.library.custom_op("unimodal::fp8_swiglu", mutates_args=())
def fp8_swiglu(x: torch.Tensor, x_inv_scale: torch.Tensor, weight: torch.Tensor,
               weight_inv_scale: torch.Tensor) -> torch.Tensor:
    """silu(g) * u (M, N) bf16 for [g | u] = (x * x_inv_scale) @ (weight * weight_inv_scale)^T;
    x (M, K) e4m3, x_inv_scale (M, 1) float32, weight (2N, K) e4m3, weight_inv_scale (2N,)."""
    if not x.is_cuda:
        return fp8_swiglu_reference(x, x_inv_scale, weight, weight_inv_scale)
    out = torch.empty(x.shape[0], weight.shape[0] // 2, device=x.device, dtype=torch.bfloat16)
    return launch_fp8_swiglu(x.contiguous(), x_inv_scale.contiguous(), weight.contiguous(),
                             weight_inv_scale.contiguous(), out)


@fp8_swiglu.register_fake
def _(x, x_inv_scale, weight, weight_inv_scale):
    return x.new_empty((x.shape[0], weight.shape[0] // 2), dtype=torch.bfloat16)


class Float8SwiGLUMLP(nn.Module):
    """A decoder layer's MLP (llama.MLP with fused gate/up) for sampling: gate/up and SwiGLU in
    one FP8 kernel, then the layer's own down projection (bf16 or Float8Linear)."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        if getattr(mlp, "gate_up_proj", None) is None:
            raise ValueError("Float8SwiGLUMLP needs fused projections (fuse_projections first)")
        data, inv_scale = quantize_rowwise(mlp.gate_up_proj.weight.detach())
        self.register_buffer("gate_up_weight", data)
        self.register_buffer("gate_up_inv_scale", inv_scale.view(-1))
        self.down_proj = mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        data, inv_scale = quantize_rowwise(rows)
        hidden = fp8_swiglu(data, inv_scale, self.gate_up_weight, self.gate_up_inv_scale)
        # bf16 out of the kernel; a float32 model (the CPU) gets its own dtype back
        return self.down_proj(hidden.view(*x.shape[:-1], -1).to(x.dtype))


def use_fp8_swiglu_kernel(backbone: nn.Module) -> int:
    """Replace each decoder layer's fused MLP by a Float8SwiGLUMLP in place; returns how many.
    Call after `fuse_projections` and before torch.compile; the fused gate/up may already be a
    Float8Linear (`convert_layers_to_float8`), whose bf16 weight is read the same way. Layers
    whose input width or gate and up widths are not multiples of 16 (FP8 tensor-core shapes)
    stay as they are."""
    swapped = 0
    for layer in backbone.model.layers:
        fused = getattr(layer.mlp, "gate_up_proj", None)
        if fused is None or fused.in_features % 16 or fused.out_features % 32:
            continue
        layer.mlp = Float8SwiGLUMLP(layer.mlp)
        swapped += 1
    return swapped
