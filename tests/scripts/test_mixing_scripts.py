"""The data scripts end to end: tokenizers/encode_text.py, mixing/inspect.py, mixing/benchmark.py."""

import json
import re

import pytest

from mixture_fixtures import LATENT_DIM, code_shards, data_config, text_shards
from unified_fixtures import load_script, make_assets
from unimodal.config import ConfigError
from unimodal.data.mixture import PackedBatchStream
from unimodal.data.text_shards import TEXT_META_FILE


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    text_model, _, _, vocab, _ = make_assets(folder)
    vocab.save(folder / "vocab")
    return folder / "vocab", text_model, vocab


def _read_back(vocab, pattern, batches=6):
    cfg = data_config([("t", "text", pattern, 1.0)], seq_len=64)
    texts = []
    for batch, _ in zip(PackedBatchStream(cfg, vocab, LATENT_DIM), range(batches)):
        for r in range(batch["doc_ids"].shape[0]):
            for d in batch["doc_ids"][r].unique().tolist():
                if d >= 0:
                    texts.append(vocab.decode_text(batch["input_ids"][r][batch["doc_ids"][r] == d]))
    return texts


def test_encode_text_writes_shards_the_stream_reads(vocab_dir, tmp_path):
    folder, text_model, vocab = vocab_dir
    docs = ["a red circle above a blue square", "two shapes: a green triangle", "the end."]
    (tmp_path / "a.txt").write_text("\n".join(docs[:2]) + "\n\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": docs[2]}) + "\n")
    encode = load_script("tokenizers/encode_text.py").main
    meta = encode([f"input=[{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl'}]", "jsonl_field=body",
                   f"out_dir={tmp_path / 'ids'}", f"vocab={folder}", "shard_size=2"])
    assert meta["documents"] == 3 and meta["shards"] == 2
    assert meta["tokens"] == sum(len(vocab.encode_text(d)) for d in docs)
    pattern = str(tmp_path / "ids" / "shard-{000000..000001}.tar")
    assert set(_read_back(vocab, pattern)) == set(docs)      # endless: every document, repeatedly
    # The same ids from the tokenizer file; raw text shards give the same documents on the fly.
    encode([f"input=[{tmp_path / 'a.txt'}]", f"out_dir={tmp_path / 'tok'}",
            f"text_tokenizer={text_model}", "keep_text=false"])
    encode([f"input=[{tmp_path / 'a.txt'}]", f"out_dir={tmp_path / 'raw'}", "raw=true"])
    with pytest.raises(ConfigError, match="exactly one of vocab"):
        encode([f"input=[{tmp_path / 'a.txt'}]", f"out_dir={tmp_path / 'x'}", "raw=true",
                f"vocab={folder}"])
    assert set(_read_back(vocab, str(tmp_path / "tok" / "shard-000000.tar"))) == set(docs[:2])
    assert set(_read_back(vocab, str(tmp_path / "raw" / "shard-000000.tar"))) == set(docs[:2])
    # Shards from another tokenizer are refused before training starts.
    meta_file = tmp_path / "tok" / TEXT_META_FILE
    meta = json.loads(meta_file.read_text())
    meta["tokenizer"]["probe_ids"][0] += 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]\.shards.*different text tokenizer"):
        PackedBatchStream(data_config([("t", "text", str(tmp_path / "tok" / "shard-000000.tar"), 1.0)]),
                          vocab, LATENT_DIM)


def test_inspect_prints_proportions_tokens_and_examples(vocab_dir, tmp_path, capsys):
    folder, _, vocab = vocab_dir
    text = text_shards(tmp_path / "t", "web", 2, 40, vocab, "txt")
    images = code_shards(tmp_path / "c", "in1k", 2, 40, "class_images")
    captions = code_shards(tmp_path / "p", "cc", 2, 40, "caption_images")
    config = tmp_path / "mix.yaml"
    config.write_text(
        f"vocab: {folder}\nlatent_dim: {LATENT_DIM}\nbatches: 40\ndata:\n  seq_len: 256\n"
        "  num_workers: 0\n  sources:\n"
        f"    - {{name: web, kind: text, shards: '{text}', weight: 2}}\n"
        f"    - {{name: in1k, kind: class_images, shards: '{images}', weight: 1}}\n"
        f"    - {{name: cc, kind: caption_images, shards: '{captions}', weight: 1}}\n")
    stats = load_script("mixing/inspect.py").main(["--config", str(config), "examples=1"])
    out = capsys.readouterr().out
    assert sum(stats["samples"]) > 0 and len(stats["tokens"]) == 3
    for name in ("web", "in1k", "cc"):
        assert re.search(rf"^{name} +\S+ +\d+\.\d% +\d+\.\d% +\d+\.\d% +\d+", out, re.M), name
    assert "[web] text" in out and "[in1k] image" in out and "[cc] image" in out
    assert "<class_" in out or "<null>" in out
    with pytest.raises(ConfigError, match="data.seq_len"):
        load_script("mixing/inspect.py").main(["--config", str(config), "data.seq_len=50"])


def test_benchmark_runs_and_prints_a_table(capsys):
    result = load_script("mixing/benchmark.py").main(
        ["seconds=0.1", "shards=1", "per_shard=12", "seq_len=1024"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-7].startswith("stream") and "x GPU" in out[-7]
    assert result["gpu_tokens_per_s"] > 0 and result["per_worker_tokens_per_s"] > 0
