"""FP8 matmuls (unimodal/model/float8.py): which linears convert, that the weights and
checkpoints stay the same, and that the emulated float8 forward and backward track the plain
model's (on the CPU torchao emulates the casts; the speed is measured on a GPU, README)."""

import copy

import pytest
import torch
import torch.nn as nn

pytest.importorskip("torchao", reason="the fp8 extra (torchao) is not installed")

from unified_fixtures import causal_mask  # noqa: E402
from unimodal.config import ConfigError  # noqa: E402
from unimodal.model.float8 import convert_layers_to_float8  # noqa: E402
from unimodal.model.llama import LlamaBackbone  # noqa: E402
from unimodal.model.unified import BackboneConfig, UnifiedModelConfig  # noqa: E402


def backbone(intermediate_size: int = 96) -> LlamaBackbone:
    cfg = BackboneConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=intermediate_size)
    torch.manual_seed(0)
    model = LlamaBackbone(cfg.to_hf(vocab_size=80))
    model.init_weights(std=0.05)
    return model


def plain_linears(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if type(m) is nn.Linear]


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_only_decoder_layer_projections_convert_and_the_weights_stay(recipe):
    model = backbone()
    state = copy.deepcopy(model.state_dict())
    assert convert_layers_to_float8(model, recipe) == 2 * 7  # q k v o gate up down per layer
    assert convert_layers_to_float8(model, recipe) == 0      # converted layers stay as they are
    assert plain_linears(model) == ["lm_head"]  # the output head stays in bf16
    after = model.state_dict()
    assert list(after) == list(state)  # same names: checkpoints load either way
    for name, value in state.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name
    plain = backbone()
    plain.load_state_dict(after)


def test_a_projection_not_divisible_by_16_stays_plain():
    model = backbone(intermediate_size=72)  # gate/up/down: 64 x 72, not a float8 shape
    assert convert_layers_to_float8(model) == 2 * 4
    assert sorted(n.rsplit(".", 1)[-1] for n in plain_linears(model)) == (
        ["down_proj"] * 2 + ["gate_proj"] * 2 + ["lm_head"] + ["up_proj"] * 2)


def test_fused_projections_convert_and_named_ones_stay_bf16():
    """The sampler fuses q/k/v and gate/up first; `keep_bf16` leaves the named projections plain
    and an unknown name is refused naming the choices."""
    model = backbone()
    model.fuse_projections()
    with pytest.raises(ConfigError, match=r"fp8_keep_bf16: unknown projection\(s\) \['down'\]"):
        convert_layers_to_float8(model, keep_bf16=("down",))
    assert convert_layers_to_float8(model, keep_bf16=("down_proj",)) == 2 * 3  # qkv o gate_up
    assert sorted(n.rsplit(".", 1)[-1] for n in plain_linears(model)) == (
        ["down_proj"] * 2 + ["lm_head"])


def test_float8_forward_and_gradients_track_the_plain_model():
    plain, fp8 = backbone(), backbone()
    convert_layers_to_float8(fp8)
    ids = torch.randint(0, 80, (2, 24))
    positions = torch.arange(24).expand(2, 24)
    outs = []
    for model in (plain, fp8):
        hidden, _ = model(model.embed(ids), positions, causal_mask(ids))
        hidden.square().mean().backward()
        outs.append((hidden.detach(), model.model.layers[0].mlp.down_proj.weight.grad))
    (h_plain, g_plain), (h_fp8, g_fp8) = outs
    assert not torch.equal(h_plain, h_fp8)  # the casts really happened
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(h_fp8, h_plain) < 0.15   # e4m3 rounds to 3 mantissa bits (7.8% here)
    assert rel(g_fp8, g_plain) < 0.3    # gradients go through e5m2 (wrong weights: > 1)


def hide_torchao(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))


def test_fp8_without_torchao_is_refused_before_sampling_but_a_model_config_loads(monkeypatch):
    from unimodal.eval_sampling import SamplingRunConfig

    hide_torchao(monkeypatch)
    with pytest.raises(ConfigError, match=r"^fp8='rowwise' needs torchao.*unimodal\[fp8\]"):
        SamplingRunConfig(compile=True, fp8="rowwise").validate()
    # the export of an FP8 run keeps model.fp8 in its config, and samples in bf16 without torchao
    UnifiedModelConfig(fp8="rowwise").validate()


def test_a_gpu_without_fp8_tensor_cores_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100")
    model = backbone()
    with pytest.raises(ConfigError, match=r"fp8='tensorwise' needs FP8 tensor cores.*A100"):
        convert_layers_to_float8(model)
    assert len(plain_linears(model)) == 1 + 2 * 7  # nothing swapped


def test_an_unknown_recipe_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"model\.fp8='blockwise'"):
        UnifiedModelConfig(fp8="blockwise").validate()
    with pytest.raises(ConfigError, match="fp8='x'"):
        convert_layers_to_float8(backbone(), "x")


@pytest.mark.gpu
def test_compiled_float8_layers_on_cuda_track_bf16_forward_and_backward():
    # The real FP8 kernels (torch._scaled_mm on FP8 tensor cores) under torch.compile, as the
    # Pretrainer runs them: close to the bf16 layers, and gradients reach every weight.
    ids = torch.randint(0, 80, (4, 256), device="cuda")
    positions = torch.arange(256, device="cuda").expand(4, 256)
    outs = []
    for fp8 in ("", "tensorwise"):
        model = backbone().to("cuda", torch.bfloat16)
        if fp8:
            convert_layers_to_float8(model, fp8)
        for layer in model.model.layers:
            layer.compile()
        hidden, _ = model(model.embed(ids), positions, causal_mask(ids))
        hidden.float().square().mean().backward()
        layers = list(model.model.layers.parameters())  # (the head is not in this forward)
        assert all(p.grad is not None and p.grad.isfinite().all() for p in layers)
        outs.append(hidden.detach().float())
    assert ((outs[1] - outs[0]).norm() / outs[0].norm()).item() < 0.15


@pytest.mark.gpu
def test_fp8_sampling_draws_valid_codes_on_cuda(tmp_path):
    from unimodal.model.sampling import ImageSamplingConfig, compile_for_sampling, sample_codes
    from unimodal.model.vocabulary import image_prompt
    from unimodal.random_models import random_class_conditional_model

    torch.manual_seed(0)
    model, tokenizer, vocab = random_class_conditional_model("tiny", tmp_path, "cuda")
    compile_for_sampling(model, tokenizer, cuda_graphs=True, fp8="rowwise")
    assert "lm_head" in plain_linears(model.backbone) and len(plain_linears(model.backbone)) == 1
    # rowwise: gate/up + SwiGLU run as one Triton kernel (float8_swiglu.py)
    assert all(type(layer.mlp).__name__ == "Float8SwiGLUMLP" for layer in model.backbone.model.layers)
    codes = sample_codes(model, [image_prompt(vocab, class_id=c) for c in (3, 9)],
                         ImageSamplingConfig(cfg_scale=4.0), seeds=[3, 9])
    tok = model.tok_cfg
    assert codes.shape == (2, tok.code_maps, *tok.grid)
    assert 0 <= codes.min() and codes.max() < tok.codebook_size
