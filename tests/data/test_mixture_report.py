"""What a mixture really delivers (unimodal/data/mixture_report.py): the counts summed over the
real stream, the share table against hand-computed percentages, decoded examples of each source,
and the inspect config's errors naming the key."""

import re

import numpy as np
import pytest
import torch

from mixture_fixtures import LATENT_DIM, code_record, code_shards, data_config, text_shards
from unimodal.config import ConfigError
from unimodal.data.mixture import PackedBatchStream
from unimodal.data.mixture_report import (InspectConfig, describe_document, example_documents,
                                          measure_mixture, mixture_table)
from unimodal.data.sample_documents import SampleDocuments
from unimodal.data.sequences import text_document


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, vocab):
    root = tmp_path_factory.mktemp("shards")
    return data_config([("web", "text", text_shards(root / "t", "web", 1, 20, vocab, "txt",
                                                    max_words=150), 3.0),
                        ("img", "class_images", code_shards(root / "c", "img", 1, 20,
                                                            "class_images"), 1.0)])


def test_mixture_table_matches_hand_computed_shares(cfg):
    stats = {"samples": [30, 10], "tokens": [600, 200], "positions": 1000, "batches": 5}
    lines = mixture_table(cfg, stats).splitlines()
    assert lines[0].split() == ["source", "kind", "weight%", "samples%", "tokens%", "tokens", "tok/sample"]
    assert lines[1].split() == ["web", "text", "75.0%", "75.0%", "75.0%", "600", "20.0"]
    assert lines[2].split() == ["img", "class_images", "25.0%", "25.0%", "25.0%", "200", "20.0"]
    assert lines[3] == "5 batches, 1000 positions, 40 samples, padding 20.0%"
    empty = mixture_table(cfg, {"samples": [0, 0], "tokens": [0, 0], "positions": 0, "batches": 0})
    assert "0.0%" in empty.splitlines()[1] and empty.endswith("padding 100.0%")   # no division by 0


def test_measure_mixture_sums_the_stream_counts(cfg, vocab):
    stats = measure_mixture(PackedBatchStream(cfg, vocab, LATENT_DIM), 6)
    samples, tokens, placed = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0
    for _, batch in zip(range(6), PackedBatchStream(cfg, vocab, LATENT_DIM)):  # the same stream again
        samples += batch["source_samples"]
        tokens += batch["source_tokens"]
        placed += int((batch["doc_ids"] >= 0).sum())
    assert stats == {"tokens": tokens.tolist(), "samples": samples.tolist(),
                     "positions": 6 * 2 * 256, "batches": 6}
    assert sum(stats["tokens"]) == placed and min(stats["samples"]) > 0


def test_describe_document_text_and_images(vocab):
    doc = text_document(vocab, vocab.encode_text("a red circle above a blue square"))
    assert describe_document(vocab, doc, None) == f"text, {len(doc)} tokens: 'a red circle above a blue square'"
    assert describe_document(vocab, doc, None, max_chars=5) == f"text, {len(doc)} tokens: 'a red...'"
    rng = np.random.default_rng(0)
    make = SampleDocuments("caption_images", vocab, LATENT_DIM, 512, 2, 0.0, True)
    (cap,) = make(code_record("k", rng, caption="a blue square"), np.random.default_rng(1))
    steps = [b["block_steps"] for b in cap.blocks]
    described = describe_document(vocab, cap, make.objective)
    assert described.startswith(f"image, {len(cap)} tokens: prompt '<bos> <boi>' caption 'a blue square'"
                                f", steps {steps}, codes (4, 8, 8)")
    make = SampleDocuments("class_images", vocab, LATENT_DIM, 512, 2, 1.0, True)  # always <null>
    (null,) = make(code_record("k", rng, class_id=4), np.random.default_rng(1))
    assert "prompt '<bos> <null> <boi>'," in describe_document(vocab, null, make.objective)
    make = SampleDocuments("class_images", vocab, LATENT_DIM, 512, 2, 0.0, True)
    (cls,) = make(code_record("k", rng, class_id=4), np.random.default_rng(1))
    assert "prompt '<bos> <class_4> <boi>'," in describe_document(vocab, cls, make.objective)


def test_example_documents_per_source_in_config_order(cfg, vocab):
    examples = example_documents(cfg, vocab, LATENT_DIM, per_source=2)
    assert [name for name, _ in examples] == ["web", "web", "img", "img"]
    assert all(d.startswith("text, ") for n, d in examples if n == "web")
    assert all(re.match(r"image, \d+ tokens: prompt '<bos> <class_\d+> <boi>'", d)
               for n, d in examples if n == "img")
    text_only = data_config([(s.name, s.kind, s.shards, s.weight) for s in cfg.sources[:1]], seq_len=20)
    cut = [d for _, d in example_documents(text_only, vocab, LATENT_DIM, 3)]
    assert len(cut) == 3 and any(re.search(r"\(cut into \d+ pieces; first shown\)$", d) for d in cut)
    assert example_documents(cfg, vocab, LATENT_DIM, per_source=0) == []


def test_inspect_config_errors_name_the_key(assets, cfg, tmp_path):
    _, tok_dir, _, vocab, _ = assets
    vocab.save(tmp_path / "vocab")

    def check(match, **kw):
        c = InspectConfig(**{"vocab": str(tmp_path / "vocab"), "latent_dim": 8, "data": cfg, **kw})
        with pytest.raises(ConfigError, match=match):
            c.validate()

    check(r"^vocab: required", vocab="")
    check(r"vocab='.*nowhere': no vocabulary\.json", vocab=str(tmp_path / "nowhere"))
    check(r"image_tokenizer or latent_dim", latent_dim=0)
    check(r"image_tokenizer='.*missing': folder not found", image_tokenizer=str(tmp_path / "missing"))
    check(r"^batches=0: too small", batches=0)
    check(r"^examples=-1: too small", examples=-1)
    check(r"^data\.seq_len=1", data=data_config([(s.name, s.kind, s.shards, s.weight)
                                                  for s in cfg.sources], seq_len=1))
    good = InspectConfig(vocab=str(tmp_path / "vocab"), image_tokenizer=str(tok_dir), data=cfg,
                         examples=0)
    good.validate()
    assert good.resolved_latent_dim() == LATENT_DIM
    assert InspectConfig(latent_dim=5).resolved_latent_dim() == 5


def test_an_audio_source_streams_and_is_described(assets, tmp_path):
    """caption_audio through the whole stream: its documents carry the vocabulary's audio ids
    (<boa>, codes, <eoa>) in the packed batches, and inspect describes them as audio."""
    from mixture_fixtures import write_tar
    from unimodal.model.modalities import CodeModalityConfig
    from unimodal.model.vocabulary import Vocabulary

    vocab_cfg = assets[4]
    av = Vocabulary.build(type(vocab_cfg)(**{**vocab_cfg.__dict__, "modalities": [
        CodeModalityConfig(name="audio", codebook_size=32, code_maps=2, grid=[5])]}))
    rng = np.random.default_rng(0)
    shard = write_tar(tmp_path / "audio.tar", [code_record(f"{i:03d}", rng, caption="a loud note",
                                                           shape=(2, 5), high=32)
                                               for i in range(6)])
    text = text_shards(tmp_path / "text", "text", 1, 6, av)
    cfg = data_config([("text", "text", text, 0.5), ("notes", "caption_audio", shard, 0.5)],
                      seq_len=64, cfg_drop=0.0)
    audio = av.modality("audio")
    seen = torch.zeros(av.size, dtype=torch.bool)
    for _, batch in zip(range(4), PackedBatchStream(cfg, av, LATENT_DIM)):
        seen[batch["input_ids"].flatten()] = True
        assert (batch["block_ids"] == -1).all()       # no image blocks
    assert seen[audio.begin_id] and seen[audio.end_id] and seen[audio.code_slice].any()
    described = dict(example_documents(cfg, av, LATENT_DIM, per_source=1))
    assert described["notes"] == "audio, 25 tokens: caption 'a loud note', 2 maps of 5 codes"
