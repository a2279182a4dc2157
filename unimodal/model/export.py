"""Unified-model checkpoints: Hugging Face Llama format for the backbone plus our extra modules.

A consolidated checkpoint folder:
    hf/                        config.json + model.safetensors: loads with LlamaForCausalLM
    image_input.safetensors    block projector, step embedding, frozen codebook copy
    vocabulary/                the Vocabulary (with a copy of the text tokenizer)
    image_tokenizer/           the RDPM tokenizer (decoder for sampling), copied in
    {name}_tokenizer/          each further modality's tokenizer (audio_tokenizer/, ...), copied
                               in when the config names it (model.vocab.modalities[i].tokenizer)
    unified.yaml               the UnifiedModelConfig

Extending a base Llama (`extend_pretrained_llama`): the base's text rows are kept; the new rows
(specials, class tokens, image codes) start at the mean of the base embedding rows plus small
Gaussian noise (std = 0.02 x the rows' std), in the embedding and, when untied, in the head. The
mean keeps new tokens' logits and activations on the scale the base model expects; the noise
makes the K code rows distinct so they can specialise.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig

from unimodal.config import load_config, save_config
from unimodal.model.unified import UnifiedModel, UnifiedModelConfig
from unimodal.model.vocabulary import Vocabulary
from unimodal.tokenizer.rdpm_tokenizer import (CONFIG_FILE as TOKENIZER_CONFIG, WEIGHTS_FILE,
                                               RDPMTokenizer, check_same_codes, load_tokenizer,
                                               save_tokenizer)

HF_DIR, INPUT_FILE, VOCAB_DIR, TOKENIZER_DIR, CONFIG_FILE = (
    "hf", "image_input.safetensors", "vocabulary", "image_tokenizer", "unified.yaml")


@dataclass
class _UnifiedFile:
    model: UnifiedModelConfig = field(default_factory=UnifiedModelConfig)


def build_unified(cfg: UnifiedModelConfig, device: str | torch.device = "cpu"
                  ) -> tuple[UnifiedModel, RDPMTokenizer]:
    """Vocabulary, frozen image tokenizer and model from a config (scratch or extended base)."""
    cfg.resolve_image_geometry()
    tokenizer = load_tokenizer(cfg.image_tokenizer, device)
    vocab = Vocabulary.build(cfg.vocab)
    if cfg.backbone.base_model:
        model = extend_pretrained_llama(cfg, vocab, tokenizer)
    else:
        model = UnifiedModel(cfg, vocab, tokenizer.cfg)
        model.load_codebook(tokenizer.state_dict())
    return model.to(device), tokenizer


def extend_pretrained_llama(cfg: UnifiedModelConfig, vocab: Vocabulary,
                            tokenizer: RDPMTokenizer) -> UnifiedModel:
    base = Path(cfg.backbone.base_model)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"model.backbone.base_model={str(base)!r}: no config.json there; "
                                "give a local Hugging Face Llama checkpoint folder")
    hf_config = LlamaConfig.from_pretrained(base)
    if vocab.text_size > hf_config.vocab_size:
        raise ValueError(f"the vocabulary's text range ({vocab.text_size}) is larger than the base "
                         f"model's vocab_size ({hf_config.vocab_size}): use the base model's "
                         "tokenizer (vocab.text_tokenizer = the base checkpoint folder)")
    state = _read_safetensors_folder(base)
    base_rows = hf_config.vocab_size
    hf_config.vocab_size = vocab.size
    model = UnifiedModel(cfg, vocab, tokenizer.cfg, hf_config=hf_config)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key not in state:
            continue
        old = state[key]
        new_rows = vocab.size - base_rows
        grown = _grow_rows(old[: min(base_rows, vocab.size)], max(new_rows, 0))
        state[key] = grown[: vocab.size]
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hf_config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"{base} does not match the Llama architecture: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    model.load_codebook(tokenizer.state_dict())
    return model


def _grow_rows(rows: torch.Tensor, extra: int) -> torch.Tensor:
    if extra == 0:
        return rows
    mean, std = rows.float().mean(0), rows.float().std(0).mean()
    new = mean + 0.02 * std * torch.randn(extra, rows.shape[1])
    return torch.cat([rows, new.to(rows.dtype)])


def _read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def save_unified(model: UnifiedModel, tokenizer: RDPMTokenizer, folder: str | Path,
                 state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write a consolidated checkpoint; `state_dict` overrides the weights (e.g. EMA weights)."""
    folder = Path(folder)
    (folder / HF_DIR).mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict is not None else model.state_dict()
    backbone = {k[len("backbone."):]: v.detach().contiguous().cpu()
                for k, v in state.items() if k.startswith("backbone.")}
    if model.backbone.config.tie_word_embeddings:
        backbone.pop("lm_head.weight", None)  # shared with embed_tokens, as HF stores it
    model.backbone.config.save_pretrained(folder / HF_DIR)
    save_file(backbone, str(folder / HF_DIR / "model.safetensors"), metadata={"format": "pt"})
    extra = {k[len("image_input."):]: v.detach().contiguous().cpu()
             for k, v in state.items() if k.startswith("image_input.")}
    save_file(extra, str(folder / INPUT_FILE))
    model.vocab.save(folder / VOCAB_DIR)
    save_tokenizer(tokenizer, folder / TOKENIZER_DIR)
    for modality in model.cfg.vocab.modalities:
        if modality.tokenizer:  # copied as saved: the weights are frozen, nothing trains them
            target = folder / modality_tokenizer_dir(modality.name)
            target.mkdir(exist_ok=True)
            for name in (WEIGHTS_FILE, TOKENIZER_CONFIG):
                shutil.copyfile(Path(modality.tokenizer) / name, target / name)
    save_config(_UnifiedFile(model.cfg), folder / CONFIG_FILE)


def modality_tokenizer_dir(name: str) -> str:
    return f"{name}_tokenizer"


def load_modality_tokenizer(folder: str | Path, vocab: Vocabulary, name: str,
                            device: str | torch.device = "cpu") -> RDPMTokenizer:
    """The tokenizer of further modality `name` from a checkpoint folder, checked against the
    vocabulary (a mismatch names the modality and the field)."""
    path = Path(folder) / modality_tokenizer_dir(name)
    vocab.modality(name)  # an unknown name fails naming the modalities there are
    if not path.is_dir():
        raise FileNotFoundError(f"{folder} has no {path.name}/: the model was trained without "
                                f"a {name} tokenizer folder (set model.vocab.modalities[i]."
                                "tokenizer to decode its codes)")
    tokenizer = load_tokenizer(path, device)
    tok = tokenizer.cfg
    vocab.check_tokenizer(name, tok.codebook_size, tok.code_maps, tok.grid)
    return tokenizer


def load_unified(folder: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, image_decoder: str | Path = ""
                 ) -> tuple[UnifiedModel, RDPMTokenizer]:
    """The model and its tokenizer; `image_decoder` (a tokenizer folder whose quantizer equals the
    checkpoint's, e.g. a decoder fine-tune) replaces the tokenizer used to decode sampled codes."""
    folder = Path(folder)
    for name in (HF_DIR, INPUT_FILE, VOCAB_DIR, TOKENIZER_DIR, CONFIG_FILE):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder} is not a unified-model checkpoint: {name} is "
                                    "missing (pass a folder written by save_unified / the "
                                    "pretraining export)")
    # upgrade_renamed: an export written before a key's rename (vocab.steps) still loads.
    cfg = load_config(_UnifiedFile, folder / CONFIG_FILE, upgrade_renamed=True).model
    vocab = Vocabulary.load(folder / VOCAB_DIR)
    tokenizer = load_tokenizer(folder / TOKENIZER_DIR, device)
    if image_decoder:
        tuned = load_tokenizer(image_decoder, device)
        check_same_codes(tokenizer, tuned, f"image_decoder={image_decoder}", parts=("quantizer",))
        tokenizer = tuned
    hf_config = LlamaConfig.from_pretrained(folder / HF_DIR)
    model = UnifiedModel(cfg, vocab, tokenizer.cfg, hf_config=hf_config)
    missing, unexpected = model.backbone.load_state_dict(
        load_file(str(folder / HF_DIR / "model.safetensors")), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"} or (
            missing and not hf_config.tie_word_embeddings):
        raise ValueError(f"{folder / HF_DIR}: weights do not match the config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.image_input.load_state_dict(load_file(str(folder / INPUT_FILE)))
    return model.to(device=device, dtype=dtype).eval(), tokenizer

