"""Text shards (unimodal/data/text_shards.py): documents written to shards and read back as the
same ids, a tokenizer fingerprint that refuses foreign shards, unusable samples named, and long
documents cut into pieces that keep the true next-token targets."""

import io
import json

import numpy as np
import pytest

from unified_fixtures import make_assets
from unimodal.config import ConfigError
from unimodal.data.sequences import text_document
from unimodal.data.shard_reader import read_whole_shard
from unimodal.data.text_shards import (TEXT_META_FILE, check_text_shard_meta, text_pieces,
                                       text_record, text_sample_ids, tokenizer_fingerprint,
                                       write_text_shards)
from unimodal.model.document import IGNORE

DOCS = ["a red circle above a blue square", "green", "the triangle is left of the circle",
        "", "blue square", "a diamond", "right of the red one"]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))[3]


def read_back(folder, vocab):
    samples = [s for path in sorted(folder.glob("shard-*.tar")) for s in read_whole_shard(str(path))[0]]
    return [text_sample_ids(s, vocab) for s in samples], samples


def test_written_shards_read_back_as_the_same_ids(vocab, tmp_path):
    meta = write_text_shards(iter(DOCS), tmp_path / "out", vocab, shard_size=3)
    ids, samples = read_back(tmp_path / "out", vocab)
    assert ids == [vocab.encode_text(d) for d in DOCS]
    assert [s["txt"].decode() for s in samples] == DOCS                # keep_text: both fields
    assert [s["__key__"] for s in samples] == [f"{i:010d}" for i in range(7)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        TEXT_META_FILE, "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert meta == json.loads((tmp_path / "out" / TEXT_META_FILE).read_text())
    assert meta["documents"] == 7 and meta["shards"] == 3 and meta["pretokenized"] is True
    assert meta["tokens"] == sum(len(vocab.encode_text(d)) for d in DOCS)
    assert meta["tokenizer"] == json.loads(json.dumps(tokenizer_fingerprint(vocab)))
    # Reruns give identical bytes (fixed mtime), and no .tmp file is left behind.
    write_text_shards(DOCS, tmp_path / "again", vocab, shard_size=3)
    for name in ("shard-000000.tar", "shard-000002.tar"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_raw_text_and_ids_only_shards(vocab, tmp_path):
    meta = write_text_shards(DOCS[:2], tmp_path / "raw", None, shard_size=10)
    _, samples = read_back(tmp_path / "raw", vocab)
    assert [set(s) - {"__key__", "__url__", "__local_path__"} for s in samples] == [{"txt"}] * 2
    assert meta["tokens"] is None and meta["tokenizer"] is None and meta["pretokenized"] is False
    write_text_shards(DOCS[:2], tmp_path / "ids", vocab, keep_text=False)
    _, samples = read_back(tmp_path / "ids", vocab)
    assert all("ids.npy" in s and "txt" not in s for s in samples)
    with pytest.raises(ValueError, match="shard_size must be >= 1, got 0"):
        write_text_shards(DOCS, tmp_path / "x", vocab, shard_size=0)
    with pytest.raises(ValueError, match="keep_text must be True"):
        write_text_shards(DOCS, tmp_path / "x", None, keep_text=False)


def test_shards_of_another_tokenizer_are_refused(vocab, tmp_path):
    write_text_shards(DOCS[:2], tmp_path / "ours", vocab)
    shards = [str(tmp_path / "ours" / "shard-000000.tar")]
    check_text_shard_meta(shards, vocab, "data.sources[0]")          # ours: fine
    meta_path = tmp_path / "ours" / TEXT_META_FILE
    meta = json.loads(meta_path.read_text())
    meta["tokenizer"]["probe_ids"][0] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]: .*encode_text_meta\.json was "
                                          "written with a different text tokenizer"):
        check_text_shard_meta(shards, vocab, "data.sources[0]")
    meta["tokenizer"] = None                                          # raw text shards: no claim
    meta_path.write_text(json.dumps(meta))
    check_text_shard_meta(shards, vocab, "data.sources[0]")
    meta_path.unlink()                                                # no meta file: nothing to check
    check_text_shard_meta(shards + ["https://host/shard-000000.tar"], vocab, "x")


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_text_sample_ids_prefers_ids_then_txt_then_json(vocab):
    record = text_record("k", [5, 6, 7], "a red circle")
    assert text_sample_ids(record, vocab) == [5, 6, 7]
    assert text_sample_ids({"txt": b"a red circle", "json": b'{"text": "blue"}'}, vocab) == \
        vocab.encode_text("a red circle")
    assert text_sample_ids({"json": b'{"body": "blue", "text": "red"}'}, vocab, "body") == \
        vocab.encode_text("blue")
    assert text_sample_ids({"jsonl": b'{"text": "red"}'}, vocab) == vocab.encode_text("red")
    too_big = {"ids.npy": _npy(np.array([vocab.text_size], np.int32))}
    with pytest.raises(ValueError, match=f"outside \\[0, {vocab.text_size}\\)"):
        text_sample_ids(too_big, vocab)


@pytest.mark.parametrize("raw,match", [
    ({"ids.npy": _npy(np.zeros((2, 3), np.int32))}, r"1-D integer array, got int32 \(2, 3\)"),
    ({"ids.npy": _npy(np.zeros(3, np.float32))}, "1-D integer array, got float32"),
    ({"ids.npy": _npy(np.array([1, -1], np.int32))}, "outside \\[0, "),
    ({"json": b'{"title": "x"}'}, "json has no string field 'text'"),
    ({"json": b'["text"]'}, "json has no string field"),
    ({"cls": b"3", "__key__": "k"}, r"no text field \(ids\.npy, txt or json\); fields \['cls'\]"),
])
def test_unusable_text_samples_say_why(vocab, raw, match):
    with pytest.raises(ValueError, match=match):
        text_sample_ids(raw, vocab)


def test_long_text_is_cut_into_pieces_that_keep_next_token_targets(vocab):
    ids = list(range(3, 3 + 600))
    pieces = text_pieces(vocab, ids, 256)
    full = [vocab.bos_id, *ids, vocab.eos_id]
    assert [len(p) for p in pieces] == [256, 256, 90]
    assert sum((p.input_ids for p in pieces), []) == full
    assert sum((p.targets for p in pieces), []) == full[1:] + [IGNORE]
    assert all(p.position_ids == list(range(len(p))) for p in pieces)
    assert len(text_pieces(vocab, list(range(3, 257)), 256)) == 1          # exactly fits
    assert [len(p) for p in text_pieces(vocab, list(range(3, 258)), 256)] == [256]  # only <eos> left


def test_a_short_text_is_one_plain_document(vocab):
    (doc,) = text_pieces(vocab, [7, 8, 9], 256)
    assert doc == text_document(vocab, [7, 8, 9])
    assert doc.input_ids == [vocab.bos_id, 7, 8, 9, vocab.eos_id]
    assert doc.targets == [7, 8, 9, vocab.eos_id, IGNORE] and doc.block_of == [-1] * 5
