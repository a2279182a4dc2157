"""FP8 matmuls for the backbone's decoder layers (`model.fp8`, sampling `fp8`): torchao's
Float8Linear, which casts each matmul's inputs to float8 with dynamic scales (e4m3 forward,
e5m2 gradients) and runs them on FP8 tensor cores (H100/H200). The weights, the optimizer
state and the checkpoints stay as they are (the same parameter names and dtypes), so a model
trained with it loads without it and the other way round.

Only the decoder layers' projections convert: the output head (its logits feed the loss and
the code sampler, where float8's 3-bit mantissa would show) and the small block-input and
code-head projections stay in bf16. torchao needs both sides of a matmul divisible by 16.
On the CPU Float8Linear emulates the casts, which is slow but lets tests run the same code."""

import importlib.util

import torch
from torch import nn

from unimodal.config import ConfigError

RECIPES = ("tensorwise", "rowwise")  # torchao's scaling granularity: one scale per tensor / row


def check_recipe(recipe: str, key: str) -> None:
    """A known recipe ("" = FP8 off). `key`: the config key named in the error. A model config
    with FP8 on still loads without torchao (an export of an FP8 run samples in bf16)."""
    if recipe and recipe not in RECIPES:
        raise ConfigError(f"{key}={recipe!r}: choose '' (off) or one of {RECIPES}")


def require_fp8(recipe: str, key: str) -> None:
    """Before a run that will use FP8 (pretraining, sampling): a known recipe and torchao."""
    check_recipe(recipe, key)
    if recipe and importlib.util.find_spec("torchao") is None:
        raise ConfigError(f"{key}={recipe!r} needs torchao: pip install 'unimodal[fp8]'")


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "gate_proj", "up_proj",
               "gate_up_proj", "down_proj")  # a decoder layer's linears (llama.py), fused or not


def check_keep_bf16(names, key: str = "fp8_keep_bf16") -> None:
    """Projection names to leave in bf16: each one of PROJECTIONS."""
    unknown = sorted(set(names) - set(PROJECTIONS))
    if unknown:
        raise ConfigError(f"{key}: unknown projection(s) {unknown}; choose from {PROJECTIONS}")


def convert_layers_to_float8(backbone: nn.Module, recipe: str = "tensorwise",
                             keep_bf16: tuple[str, ...] = ()) -> int:
    """Swap every eligible nn.Linear in `backbone.model.layers` for a Float8Linear in place;
    returns how many were swapped. Call it before torch.compile (which fuses the casts).
    `keep_bf16`: projection names (of PROJECTIONS) that stay plain, e.g. ("down_proj",)."""
    require_fp8(recipe, "fp8")
    check_keep_bf16(keep_bf16)
    if torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9):
        raise ConfigError(f"fp8={recipe!r} needs FP8 tensor cores (compute capability 8.9 or "
                          f"more: H100, H200, L40S); {torch.cuda.get_device_name()} has "
                          f"{torch.cuda.get_device_capability()}")
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    def eligible(module: nn.Module, name: str) -> bool:
        # a plain nn.Linear only: a second call leaves converted layers as they are
        return (type(module) is nn.Linear and module.in_features % 16 == 0
                and module.out_features % 16 == 0 and name.rsplit(".", 1)[-1] not in keep_bf16)

    layers = backbone.model.layers
    swapped = sum(eligible(module, name) for name, module in layers.named_modules())
    convert_to_float8_training(layers, module_filter_fn=eligible,
                               config=Float8LinearConfig.from_recipe_name(recipe))
    return swapped
