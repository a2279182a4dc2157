"""Text corpora (unimodal/data/text_corpus.py): .txt / .jsonl documents streamed in order with
errors that name the file and line, and the generated shapes corpus, a pure function of (num, seed)."""

import pytest

from unimodal.data.shapes import COLORS, render_sample
from unimodal.data.text_corpus import read_documents, shapes_text_corpus


def test_shapes_text_corpus_is_deterministic_and_holds_captions():
    corpus = shapes_text_corpus(40, seed=3)
    assert corpus == shapes_text_corpus(40, seed=3) != shapes_text_corpus(40, seed=4)
    assert corpus[0] == render_sample(0, 3, 32).caption and corpus[2] == render_sample(1, 3, 32).caption
    assert all(isinstance(t, str) and t for t in corpus)
    assert sum(any(c in t for c in COLORS) for t in corpus) == len(corpus)
    assert len(set(corpus[1::2])) > 10  # the templated half varies


def test_shapes_text_corpus_prefixes_agree_and_num_is_checked():
    """Document i depends on (i, seed) alone: a shorter corpus is a prefix of a longer one."""
    assert shapes_text_corpus(7, seed=1) == shapes_text_corpus(20, seed=1)[:7]
    assert shapes_text_corpus(0) == []
    with pytest.raises(ValueError, match="num must be >= 0, got -1"):
        shapes_text_corpus(-1)


def test_read_documents_streams_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.jsonl").write_text('{"text": "three\\nlines"}\n\n{"text": "four"}\n')
    assert list(read_documents([tmp_path / "a.txt", tmp_path / "b.jsonl"])) == ["one", "two", "three\nlines", "four"]
    with pytest.raises(ValueError, match="unsupported"):
        read_documents([tmp_path / "a.txt", __file__])


def test_read_documents_field_and_blank_texts(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"body": "kept", "text": "not this"}\n{"body": "  "}\n'
                                      '{"body": "last"}\n')
    assert list(read_documents([tmp_path / "c.jsonl"], jsonl_field="body")) == ["kept", "last"]


def test_read_documents_errors_name_the_file_and_line(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("fine\n")
    # Every path is checked before anything is read, and the error lists each missing one.
    with pytest.raises(FileNotFoundError, match=r"nope1\.txt, .*nope2\.jsonl"):
        read_documents([good, tmp_path / "nope1.txt", tmp_path / "nope2.jsonl"])
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n\n{"text": oops}\n')
    docs = read_documents([bad_json])
    assert next(docs) == "ok"
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not valid JSON"):
        next(docs)
    no_field = tmp_path / "nofield.jsonl"
    no_field.write_text('{"text": "ok"}\n{"title": "x"}\n')
    with pytest.raises(ValueError, match=r"nofield\.jsonl:2: no string field 'text'"):
        list(read_documents([no_field]))
    not_object = tmp_path / "list.jsonl"
    not_object.write_text('["text"]\n')
    with pytest.raises(ValueError, match=r"list\.jsonl:1: no string field"):
        list(read_documents([not_object]))
