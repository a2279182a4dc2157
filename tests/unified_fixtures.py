"""Small building blocks shared by the unified-model tests: a text tokenizer, an image tokenizer,
a vocabulary and a tiny model, all made on the spot (nothing downloaded)."""

import importlib.util
from pathlib import Path

import torch

from unimodal.model.unified import BackboneConfig, UnifiedModel, UnifiedModelConfig
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig, save_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_tokenizer_config(**kw) -> RDPMTokenizerConfig:
    return RDPMTokenizerConfig(**{"image_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2],
                                  "latent_dim": 8, "codebook_size": 64, "steps": 4, **kw})


def make_assets(folder: Path, num_classes: int = 28, steps: int = 4):
    """(text tokenizer path, image tokenizer folder, vocabulary) under `folder`; `steps` = T of
    the image tokenizer (1 for the next_token and masked objectives)."""
    text_model = folder / "text.model"
    if not text_model.exists():
        load_script("tokenizers/train_text.py").main(
            ["shapes_corpus=1500", f"out={text_model}", "vocab_size=300"])
    torch.manual_seed(0)
    tok = RDPMTokenizer(tiny_tokenizer_config(steps=steps)).eval()
    torch.nn.init.normal_(tok.quantizer.bias_conv.weight, std=0.05)
    save_tokenizer(tok, folder / "image_tokenizer")
    vocab_cfg = VocabularyConfig(text_tokenizer=str(text_model), num_classes=num_classes,
                                 codebook_size=64, code_maps=steps, grid=[8, 8])
    return text_model, folder / "image_tokenizer", tok, Vocabulary.build(vocab_cfg), vocab_cfg


def tiny_model(vocab: Vocabulary, vocab_cfg: VocabularyConfig, tok: RDPMTokenizer,
               tokenizer_dir: Path, code_head: str = "shared", image_objective: str = "rdpm",
               **backbone) -> UnifiedModel:
    torch.manual_seed(0)
    cfg = UnifiedModelConfig(backbone=BackboneConfig(**backbone), vocab=vocab_cfg,
                             image_tokenizer=str(tokenizer_dir), code_head=code_head,
                             image_objective=image_objective)
    model = UnifiedModel(cfg, vocab, tok.cfg)
    model.load_codebook(tok.state_dict())
    return model
