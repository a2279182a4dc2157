"""The FP8 gate/up + SwiGLU kernel (unimodal/model/float8_swiglu.py): the Triton kernel against
its float32 reference (on the CPU under Triton's interpreter, on CUDA at the sampler's shape),
the reference against torchao's Float8Linear path it replaces, and the sampler's swap."""

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torchao", reason="the fp8 extra (torchao) is not installed")

from unimodal.model.float8_swiglu import (Float8SwiGLUMLP, fp8_swiglu, fp8_swiglu_reference,  # noqa: E402
                                          quantize_rowwise, use_fp8_swiglu_kernel)
from unimodal.model.llama import LlamaBackbone  # noqa: E402
from unimodal.model.unified import BackboneConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def operands(rows, width, intermediate, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=gen)
    x[3] *= 50  # rows of very different ranges: each gets its own scale
    weight = torch.randn(2 * intermediate, width, generator=gen) * 0.05
    xq, x_inv = quantize_rowwise(x.to(device))
    wq, w_inv = quantize_rowwise(weight.to(device))
    return x, weight, xq, x_inv, wq, w_inv.view(-1)


def test_rowwise_scales_are_torchaos_powers_of_two_and_round_trip():
    x = torch.randn(8, 64) * torch.logspace(-3, 3, 8)[:, None]
    data, inv_scale = quantize_rowwise(x)
    assert data.dtype == torch.float8_e4m3fn and inv_scale.shape == (8, 1)
    assert torch.equal(torch.log2(inv_scale), torch.log2(inv_scale).round())  # powers of two
    # the largest value of each row lands in e4m3's top binade (scale rounded down, max 448)
    top = data.float().abs().amax(-1)
    assert ((top > 224) & (top <= 448)).all()
    torch.testing.assert_close(data.float() * inv_scale, x, rtol=2 ** -3, atol=0)


def test_the_reference_equals_separate_gate_and_up_matmuls_then_swiglu():
    """The split into gate (first half of the weight's rows) and up (second half) is
    llama.MLP's: silu(gate) * up, not the other way round."""
    x, weight, xq, x_inv, wq, w_inv = operands(16, 64, 48)
    deq_x, deq_w = xq.float() * x_inv, wq.float() * w_inv[:, None]
    gate, up = deq_x @ deq_w[:48].t(), deq_x @ deq_w[48:].t()
    expected = (F.silu(gate) * up).to(torch.bfloat16)
    torch.testing.assert_close(fp8_swiglu_reference(xq, x_inv, wq, w_inv), expected)
    assert not torch.allclose(expected.float(), (gate * F.silu(up)).float(), atol=1e-2)


def test_the_triton_kernel_matches_the_reference_under_the_cpu_interpreter():
    """The kernel itself, each way it can load and store (pointers or tensor descriptors, one
    tile per program or persistent programs: 3 of them here, each looping over tiles), with
    ragged tails in every dimension (100 rows, 80 columns and a K of 80 do not fill the 32-wide
    tiles). Triton's interpreter runs it in a fresh process (TRITON_INTERPRET is read when the
    kernel is defined)."""
    pytest.importorskip("triton")
    script = textwrap.dedent("""
        import torch
        from unimodal.model.float8_swiglu import launch_fp8_swiglu, fp8_swiglu_reference, quantize_rowwise
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(100, 80, generator=gen); w = torch.randn(160, 80, generator=gen) * 0.05
        xq, xs = quantize_rowwise(x); wq, ws = quantize_rowwise(w)
        expected = fp8_swiglu_reference(xq, xs, wq, ws).float()
        for tma in (False, True):
            for persistent in (False, True):
                out = torch.full((100, 80), float("nan"), dtype=torch.bfloat16)
                launch_fp8_swiglu(xq, xs, wq, ws.view(-1), out,
                                  tile=dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=2,
                                            PERSISTENT=persistent, TMA=tma))
                torch.testing.assert_close(out.float(), expected, rtol=2 ** -7, atol=1e-3)
                print("kernel ok", tma, persistent)
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.count("kernel ok") == 4, result.stderr[-3000:]


def fused_mlp_model():
    cfg = BackboneConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=96)
    torch.manual_seed(0)
    model = LlamaBackbone(cfg.to_hf(vocab_size=80))
    model.init_weights(std=0.05)
    return model


def test_the_swapped_mlp_equals_torchaos_rowwise_mlp_and_keeps_its_down_projection():
    """On the CPU (float32, emulated casts) the swapped MLP gives what torchao's rowwise
    Float8Linear gate/up then SwiGLU give: the same FP8 operands, scales and down projection."""
    from unimodal.model.float8 import convert_layers_to_float8

    model = fused_mlp_model()
    x = torch.randn(2, 7, 64)
    plain = [layer.mlp(x) for layer in model.model.layers]
    with pytest.raises(ValueError, match="fused projections"):
        Float8SwiGLUMLP(model.model.layers[0].mlp)  # gate and up still separate
    model.fuse_projections()
    torchao_model = copy.deepcopy(model)
    convert_layers_to_float8(torchao_model, "rowwise", keep_bf16=("down_proj",))
    downs = [layer.mlp.down_proj for layer in model.model.layers]
    assert use_fp8_swiglu_kernel(model) == 2
    assert use_fp8_swiglu_kernel(model) == 0  # swapped layers stay as they are
    for layer, down, torchao_layer, exact in zip(model.model.layers, downs,
                                                 torchao_model.model.layers, plain):
        assert isinstance(layer.mlp, Float8SwiGLUMLP) and layer.mlp.down_proj is down
        assert not hasattr(layer.mlp, "gate_up_proj")
        with torch.no_grad():
            got, expected = layer.mlp(x), torchao_layer.mlp(x)
        fp8_error = (expected - exact).norm() / exact.norm()  # FP8's own error against float32
        error = (got - expected).norm() / expected.norm()  # the kernel's hidden is bf16-rounded
        assert 1e-2 < fp8_error < 0.1 and error < 2 ** -8, (fp8_error, error)


@pytest.mark.gpu
def test_the_kernel_on_cuda_matches_the_reference_and_torchaos_float8_linear():
    """At the d12 sampler's shape (768 -> 2 x 2048) and a ragged row count: the kernel against
    its reference, and against what it replaces (torchao's rowwise Float8Linear, then SwiGLU)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    rows, width, intermediate = 4099, 768, 2048
    x, weight, xq, x_inv, wq, w_inv = operands(rows, width, intermediate, device="cuda")
    got = fp8_swiglu(xq, x_inv, wq, w_inv)
    reference = fp8_swiglu_reference(xq, x_inv, wq, w_inv).float()
    # bf16 outputs may round to neighbours (FP8 tensor cores accumulate in fewer bits than
    # float32), so compare against the output's scale: a wrong tile or column would be far off
    difference = (got.float() - reference).abs()
    assert difference.max() <= 2 ** -6 * reference.abs().max(), difference.max()
    assert difference.norm() <= 2 ** -8 * reference.norm(), difference.norm() / reference.norm()

    linear = torch.nn.Linear(width, 2 * intermediate, bias=False, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        linear.weight.copy_(weight)
    holder = torch.nn.Sequential(linear)
    convert_to_float8_training(holder, config=Float8LinearConfig.from_recipe_name("rowwise"))
    with torch.no_grad():
        gate, up = holder(x.to("cuda", torch.bfloat16)).chunk(2, -1)
    torchao_out = (F.silu(gate) * up).float()
    # the operands as the model has them: bf16 activations and weights, quantized from there
    xq_bf16, x_inv_bf16 = quantize_rowwise(x.to("cuda", torch.bfloat16))
    wq_bf16, w_inv_bf16 = quantize_rowwise(linear.weight.detach())
    ours = fp8_swiglu(xq_bf16, x_inv_bf16, wq_bf16, w_inv_bf16.view(-1)).float()
    error = (ours - torchao_out).norm() / torchao_out.norm()
    assert error < 2 ** -7, error  # same FP8 operands; torchao rounds gate and up to bf16 first


@pytest.mark.parametrize("options, swapped", [
    ({}, True),                                          # rowwise: the kernel by default
    ({"fp8_swiglu_kernel": False}, False),
    ({"fp8_keep_bf16": ("gate_up_proj",)}, False),       # gate/up asked to stay bf16
    ({"fp8": "tensorwise"}, False),                      # the kernel has rowwise scales only
    ({"fuse_projections": False}, False),                # no fused gate/up to take over
])
def test_compile_for_sampling_uses_the_kernel_only_for_rowwise_fused_fp8_gate_up(tmp_path, options,
                                                                                  swapped):
    from unimodal.model.sampling import compile_for_sampling
    from unimodal.random_models import random_class_conditional_model

    torch.manual_seed(0)
    model, tokenizer, _ = random_class_conditional_model("tiny", tmp_path, "cpu")
    compile_for_sampling(model, tokenizer, **{"fp8": "rowwise", **options})  # compiles lazily
    kinds = {type(layer.mlp).__name__ for layer in model.backbone.model.layers}
    assert kinds == {"Float8SwiGLUMLP" if swapped else "MLP"}
