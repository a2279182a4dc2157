"""Typed configs: a dataclass per component is the source of truth, YAML and the command line only
override it.

- `load_config(Schema, path, overrides)` merges the dataclass defaults, a named size preset, the YAML
  file and `a.b=c` dotlist overrides, in that order, and returns a validated dataclass instance.
- An unknown key or a value of the wrong type fails here, before any heavy work, with a
  `ConfigError` naming the key and the file (or "command line").
- Renamed keys: a dataclass that defines `RENAMED: ClassVar[dict[str, str]]` (old -> new) refuses
  an old key with an error naming the new one; `load_config(..., upgrade_renamed=True)` maps it
  instead (files written by older code, e.g. an export's unified.yaml).
- Named sizes: a section whose dataclass defines `SIZES: ClassVar[dict[str, dict]]` accepts
  `size: <name>`; the preset's values are applied before the file's own values, so a YAML can say
  `size: tiny` and still override single fields.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and where it came from."""


def _apply_size_presets(schema: Any, node: DictConfig, user: dict, where: str, prefix: str = "") -> None:
    """Walk the schema; where the user set `size`, merge that preset under the user's values."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        sub = user.get(field.name) if isinstance(user, dict) else None
        ftype = hints.get(field.name)
        if not (dataclasses.is_dataclass(ftype) and isinstance(sub, dict)):
            continue
        key = f"{prefix}{field.name}"
        sizes = getattr(ftype, "SIZES", None)
        if sizes is not None and "size" in sub:
            name = sub["size"]
            if name not in sizes:
                raise ConfigError(
                    f"{key}.size={name!r} in {where}: unknown size; choose one of {sorted(sizes)}")
            OmegaConf.update(node, field.name, sizes[name], merge=True)
        _apply_size_presets(ftype, node[field.name], sub, where, key + ".")


def _renamed_keys(schema: Any, user: dict, where: str, upgrade: bool, prefix: str = "") -> bool:
    """Walk the schema; an old key of a section's `RENAMED` is refused naming the new key, or,
    with `upgrade`, moved to it in `user` (in place). Returns whether anything moved."""
    hints = typing.get_type_hints(schema)
    moved = False
    for old, new in getattr(schema, "RENAMED", {}).items():
        if old in user:
            if not upgrade:
                raise ConfigError(f"{where}: {prefix}{old} was renamed to {prefix}{new}; "
                                  f"write {prefix}{new}")
            user.setdefault(new, user.pop(old))
            moved = True
    for field in dataclasses.fields(schema):
        sub, ftype = user.get(field.name), hints.get(field.name)
        if dataclasses.is_dataclass(ftype) and isinstance(sub, dict):
            moved |= _renamed_keys(ftype, sub, where, upgrade, f"{prefix}{field.name}.")
    return moved


def _free_form(base: DictConfig, key: str) -> bool:
    """True when the key lies inside a plain dict section (e.g. `deepspeed:`), where new keys are fine."""
    node: Any = base
    for part in key.split(".")[:-1]:
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node[part]
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict:
            return True
    return False


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]  # omegaconf appends details
    return f"key '{key}': {msg}" if key else msg


def load_config(schema: type[T], path: str | Path | None = None,
                overrides: Sequence[str] = (), validate: bool = True,
                upgrade_renamed: bool = False) -> T:
    """Build a `schema` instance from its defaults, an optional YAML file and dotlist overrides;
    then run its `validate()` (checks of values and paths) unless `validate=False`.
    `upgrade_renamed` maps the file's renamed keys (see RENAMED) instead of refusing them."""
    base = OmegaConf.structured(schema)
    layers: list[tuple[str, DictConfig]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            layers.append((str(path), OmegaConf.load(path)))
        except Exception as err:  # yaml syntax errors come in several types
            raise ConfigError(f"cannot parse {path}: {err}") from err
    for where, layer in layers:
        user = OmegaConf.to_container(layer, resolve=False) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of sections")
        if _renamed_keys(schema, user, where, upgrade_renamed):
            layer = OmegaConf.create(user)
        try:
            _apply_size_presets(schema, base, user, where)
            base = OmegaConf.merge(base, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}: {_describe(err)}") from err
    for item in overrides:
        # One update per `key=value`: list items (`data.sources.0.shards=...`) and new keys of
        # free-form sections (`deepspeed.zero_optimization.stage=3`) work, unknown keys do not.
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {item!r} on the command line; use key=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"command line: cannot parse the value of {key}: {err}") from err
        nested: dict = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _renamed_keys(schema, nested, "command line", upgrade=False)
        if parts[0] in {f.name for f in dataclasses.fields(schema)} and key.endswith(".size"):
            _apply_size_presets(schema, base, nested, "command line")
        try:
            OmegaConf.update(base, key, value, merge=True, force_add=_free_form(base, key))
        except (OmegaConfBaseException, TypeError, ValueError) as err:
            raise ConfigError(f"command line: {_describe(err)}") from err
    try:
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{_describe(err)} (missing or invalid value)") from err
    check = getattr(cfg, "validate", None)
    if validate and callable(check):
        check()
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(to_yaml(cfg))


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """The lr factor of `step` (from 0): linear warm-up over `warmup` steps, then a cosine from 1
    down to `min_ratio` at `total`. A function of the step alone, so a resumed run repeats it."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def check_optimizer(optim, prefix: str = "optim") -> None:
    """The checks every optimizer config shares (lr, betas, weight decay, warm-up, clipping)."""
    if not optim.lr > 0:
        raise ConfigError(f"{prefix}.lr={optim.lr}: must be > 0")
    betas = list(optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"{prefix}.betas={betas}: two values, each in [0, 1)")
    if optim.weight_decay < 0:
        raise ConfigError(f"{prefix}.weight_decay={optim.weight_decay}: must be >= 0")
    if optim.warmup_steps < 0:
        raise ConfigError(f"{prefix}.warmup_steps={optim.warmup_steps}: must be >= 0")
    if getattr(optim, "grad_clip", 0) < 0:
        raise ConfigError(f"{prefix}.grad_clip={optim.grad_clip}: must be >= 0 (0 = off)")
