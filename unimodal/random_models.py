"""Random-weight unified models for benchmarks and smoke runs of the eval scripts on machines
without a trained model (eval/make_random_checkpoint.py, eval/bench_sampling.py). It sits above
the data floor because it trains a small text tokenizer on the built-in shapes corpus."""

from __future__ import annotations

from pathlib import Path

import torch

from unimodal.data.text_corpus import shapes_text_corpus
from unimodal.model.unified import BackboneConfig, UnifiedModel, UnifiedModelConfig
from unimodal.model.vocabulary import Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizer, RDPMTokenizerConfig


def random_class_conditional_model(size: str, folder: Path, device="cpu"):
    """A random-weight model of a named backbone size over 1000 class tokens and the paper's
    tokenizer (256 px, f16, K = 4096, T = 10), in bf16 on `device`: for benchmarks only.
    `folder` receives a small sentencepiece model trained on the built-in shapes text."""
    import sentencepiece as spm

    folder = Path(folder)
    text = folder / "text.txt"
    text.write_text("\n".join(shapes_text_corpus(2000)))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "text"),
                                   vocab_size=300, model_type="bpe", byte_fallback=True,
                                   bos_id=1, eos_id=2, pad_id=-1, unk_id=0, minloglevel=2)
    tok_cfg = RDPMTokenizerConfig.from_size("paper_f16")
    vocab_cfg = VocabularyConfig(text_tokenizer=str(folder / "text.model"), num_classes=1000,
                                 codebook_size=tok_cfg.codebook_size, code_maps=tok_cfg.code_maps,
                                 grid=list(tok_cfg.grid))
    vocab = Vocabulary.build(vocab_cfg)
    backbone = BackboneConfig(size=size, **BackboneConfig.SIZES[size])
    model = UnifiedModel(UnifiedModelConfig(backbone=backbone, vocab=vocab_cfg), vocab, tok_cfg)
    tokenizer = RDPMTokenizer(tok_cfg)
    model.load_codebook(tokenizer.state_dict())
    return (model.to(device, torch.bfloat16).eval(), tokenizer.to(device).eval(), vocab)
