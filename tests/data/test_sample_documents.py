"""Raw samples -> training documents (unimodal/data/sample_documents.py): each kind's prompt and
targets, classifier-free-guidance drops, every field validated with a reason, images too long for
a row refused before any work, and documents a pure function of (sample, generator state)."""

import io

import numpy as np
import pytest
import torch

from mixture_fixtures import CODE_MAPS, GRID, LATENT_DIM, code_record
from unified_fixtures import make_assets
from unimodal.data.sample_documents import DocumentTooLong, SampleDocuments, read_codes
from unimodal.model.document import IGNORE

BLOCK = GRID[0] * GRID[1]
CAPTION = "a red circle above a blue square"


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))[3]


def build(vocab, kind, **kw):
    return SampleDocuments(kind, vocab, LATENT_DIM, **{"seq_len": 512, "blocks_per_image": 2,
                                                       "cfg_drop": 0.0, "caption_loss": True, **kw})


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_class_image_document_layout(vocab):
    raw = code_record("k", np.random.default_rng(0), class_id=5)
    codes = torch.from_numpy(np.load(io.BytesIO(raw["codes.npy"])).astype(np.int64))
    (doc,) = build(vocab, "class_images", blocks_per_image=3)(raw, np.random.default_rng(1))
    prompt = [vocab.bos_id, vocab.class_token(5), vocab.boi_id]
    assert doc.input_ids[:3] == prompt and doc.targets[:3] == [IGNORE] * 3   # class: no targets
    assert len(doc) == 3 + 3 * BLOCK and doc.block_of == [-1] * 3 + [b for b in range(3) for _ in range(BLOCK)]
    steps = [block["block_steps"] for block in doc.blocks]
    assert len(set(steps)) == 3 and all(1 <= t <= CODE_MAPS for t in steps)
    for b, t in enumerate(steps):   # block b predicts the codes of its step, offset into the vocabulary
        assert doc.targets[3 + b * BLOCK:3 + (b + 1) * BLOCK] == (codes[t - 1].flatten() + vocab.code_offset).tolist()
        assert torch.equal(doc.blocks[b]["block_codes"], codes)


@pytest.mark.parametrize("caption_loss", [True, False])
def test_caption_tokens_are_targets_only_with_caption_loss(vocab, caption_loss):
    raw = code_record("k", np.random.default_rng(0), caption=f"  {CAPTION}\n")
    (doc,) = build(vocab, "caption_images", caption_loss=caption_loss)(raw, np.random.default_rng(1))
    caption_ids = vocab.encode_text(CAPTION)
    p = len(caption_ids) + 2
    assert doc.input_ids[:p] == [vocab.bos_id, *caption_ids, vocab.boi_id]
    assert doc.targets[:p] == ([*caption_ids, vocab.boi_id, IGNORE] if caption_loss else [IGNORE] * p)


def test_cfg_drop_replaces_the_prompt_with_null(vocab):
    raw = code_record("k", np.random.default_rng(0), caption=CAPTION)
    for kind, rec in (("caption_images", raw), ("class_images", {**raw, "cls": b"3"})):
        (doc,) = build(vocab, kind, cfg_drop=1.0)(rec, np.random.default_rng(1))
        assert doc.input_ids[:3] == [vocab.bos_id, vocab.null_id, vocab.boi_id]
        assert doc.targets[:3] == [IGNORE] * 3          # a dropped caption is no text target
    # About half dropped at cfg_drop 0.5, over 200 draws of one generator
    half = build(vocab, "class_images", cfg_drop=0.5)
    rng = np.random.default_rng(2)
    rec = {**raw, "cls": b"3"}
    drops = sum(half(rec, rng)[0].input_ids[1] == vocab.null_id for _ in range(200))
    assert 70 < drops < 130


def test_documents_are_a_pure_function_of_the_sample_and_generator(vocab):
    raw = code_record("k", np.random.default_rng(0), class_id=2)
    make = build(vocab, "class_images", cfg_drop=0.5)
    def draws():
        rng = np.random.default_rng(9)
        return [make(raw, rng)[0] for _ in range(6)]

    a, b = draws(), draws()
    for x, y in zip(a, b):
        assert x.input_ids == y.input_ids and x.targets == y.targets
        assert all(torch.equal(p["block_noise"], q["block_noise"]) for p, q in zip(x.blocks, y.blocks))
    assert len({(tuple(blk["block_steps"] for blk in d.blocks), d.input_ids[1]) for d in a}) > 1
    # the noise depends on the sample's seed, not on the generator
    other = build(vocab, "class_images")(raw, np.random.default_rng(123))[0]
    t = other.blocks[0]["block_steps"]
    same_step = [blk for d in a for blk in d.blocks if blk["block_steps"] == t]
    assert same_step and all(torch.equal(blk["block_noise"], other.blocks[0]["block_noise"])
                             for blk in same_step)


def test_text_samples_become_documents_or_pieces(vocab):
    make = build(vocab, "text", seq_len=16)
    (doc,) = make({"txt": b"a red circle"}, np.random.default_rng(0))
    assert doc.input_ids == [vocab.bos_id, *vocab.encode_text("a red circle"), vocab.eos_id]
    long = make({"ids.npy": npy(np.arange(3, 43, dtype=np.int32))}, np.random.default_rng(0))
    assert [len(d) for d in long] == [16, 16, 10]
    assert make({"txt": b""}, np.random.default_rng(0)) == []          # empty: skipped, not bad


def test_an_image_too_long_for_a_row_is_refused(vocab):
    raw = code_record("k", np.random.default_rng(0), class_id=1)
    with pytest.raises(DocumentTooLong, match=rf"prompt of 3 \+ image of {2 * BLOCK} positions > seq_len {2 * BLOCK + 2}"):
        build(vocab, "class_images", seq_len=2 * BLOCK + 2)(raw, np.random.default_rng(0))
    assert len(build(vocab, "class_images", seq_len=2 * BLOCK + 3)(raw, np.random.default_rng(0))[0]) == 2 * BLOCK + 3


def _with(**fields):
    raw = code_record("k", np.random.default_rng(0), class_id=1)
    raw.update({k: v for k, v in fields.items() if v is not None})
    for k in [k for k, v in fields.items() if v is None]:
        del raw[k]
    return raw


@pytest.mark.parametrize("kind,raw,match", [
    ("class_images", _with(**{"codes.npy": None}), r"missing field codes\.npy; fields \['cls', 'seed\.txt'\]"),
    ("class_images", _with(**{"seed.txt": None}), r"missing field seed\.txt"),
    ("class_images", _with(**{"codes.npy": npy(np.zeros((CODE_MAPS, 4, 4), np.uint16))}),
     r"codes of shape \(4, 4, 4\) \(uint16\), expected integer \(4, 8, 8\)"),
    ("class_images", _with(**{"codes.npy": npy(np.zeros((CODE_MAPS, *GRID), np.float32))}), r"\(float32\)"),
    ("class_images", _with(**{"codes.npy": npy(np.full((CODE_MAPS, *GRID), 64, np.uint16))}),
     r"codes outside \[0, 64\): \[64, 64\]"),
    ("class_images", _with(**{"seed.txt": b"-1"}), r"noise seed -1 outside \[0, 2\^63\)"),
    ("class_images", _with(**{"seed.txt": str(2**63).encode()}), "outside"),
    ("class_images", _with(**{"seed.txt": b"abc"}), "invalid literal"),
    ("class_images", _with(cls=None), r"missing field cls \(class id\)"),
    ("class_images", _with(cls=b"28"), r"class id 28 outside \[0, 28\)"),
    ("caption_images", _with(cls=None), r"missing or empty caption \(txt\)"),
    ("caption_images", _with(cls=None, txt=b" \n"), "missing or empty caption"),
    ("text", {"cls": b"1"}, "no text field"),
])
def test_bad_samples_raise_value_error_with_the_reason(vocab, kind, raw, match):
    with pytest.raises(ValueError, match=match):
        build(vocab, kind)(raw, np.random.default_rng(0))


def test_read_codes_returns_int64_codes_and_the_seed(vocab):
    raw = code_record("k", np.random.default_rng(0))
    raw["seed.txt"] = b" 12345\n"
    codes, seed = read_codes(raw, vocab)
    assert codes.dtype == torch.int64 and codes.shape == (CODE_MAPS, *GRID) and seed == 12345
    assert np.array_equal(codes.numpy(), np.load(io.BytesIO(raw["codes.npy"])))
    with pytest.raises(ValueError, match=r"unknown source kind 'audio'; choose one of \('text', "):
        build(vocab, "audio")


# ------------------------------------------------------------------------- audio and video
AUDIO = {"name": "audio", "codebook_size": 32, "code_maps": 2, "grid": [5]}
VIDEO = {"name": "video", "codebook_size": 16, "code_maps": 2, "grid": [2, 3, 3]}


@pytest.fixture(scope="module")
def av_vocab(tmp_path_factory):
    from unimodal.model.modalities import CodeModalityConfig
    from unimodal.model.vocabulary import Vocabulary

    cfg = make_assets(tmp_path_factory.mktemp("av"))[4]
    cfg.modalities = [CodeModalityConfig(**AUDIO), CodeModalityConfig(**VIDEO)]
    return Vocabulary.build(cfg)


@pytest.mark.parametrize("spec,kind", [(AUDIO, "caption_audio"), (VIDEO, "caption_video")])
@pytest.mark.parametrize("caption_loss", [True, False])
def test_audio_and_video_documents_are_next_token_code_sequences(av_vocab, spec, kind, caption_loss):
    shape = (spec["code_maps"], *spec["grid"])
    raw = code_record("k", np.random.default_rng(2), caption=CAPTION, shape=shape,
                      high=spec["codebook_size"])
    codes = np.load(io.BytesIO(raw["codes.npy"])).astype(np.int64)
    (doc,) = build(av_vocab, kind, caption_loss=caption_loss)(raw, np.random.default_rng(1))
    m = av_vocab.modality(spec["name"])
    caption_ids = av_vocab.encode_text(CAPTION)
    code_ids = [m.code_offset + int(c) for c in codes.reshape(-1)]   # map 1, then map 2
    assert code_ids[:codes[0].size] == [m.code_offset + int(c) for c in codes[0].reshape(-1)]
    seq = [av_vocab.bos_id, *caption_ids, m.begin_id, *code_ids, m.end_id, av_vocab.eos_id]
    assert doc.input_ids == seq and doc.position_ids == list(range(len(seq)))
    assert doc.block_of == [-1] * len(seq) and doc.blocks == []
    p = len(caption_ids) + 2
    prompt_targets = seq[1:p] if caption_loss else [IGNORE] * (p - 1)
    assert doc.targets == prompt_targets + seq[p:] + [IGNORE]   # the marker predicts code 1


def test_audio_document_fields_are_checked_against_its_modality(av_vocab):
    builder = build(av_vocab, "caption_audio")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"codes of shape \(4, 8, 8\).*expected integer \(2, 5\)"):
        builder(code_record("k", rng, caption=CAPTION), rng)   # image codes in an audio source
    with pytest.raises(ValueError, match=r"codes outside \[0, 32\)"):
        builder(code_record("k", rng, caption=CAPTION, shape=(2, 5), high=64), rng)
    with pytest.raises(ValueError, match="missing or empty caption"):
        builder(code_record("k", rng, shape=(2, 5), high=32), rng)
    with pytest.raises(DocumentTooLong, match="audio document of"):
        build(av_vocab, "caption_audio", seq_len=12)(
            code_record("k", rng, caption=CAPTION, shape=(2, 5), high=32), rng)


def test_audio_and_video_sources_are_checked_against_the_vocabulary(av_vocab, vocab):
    from unimodal.config import ConfigError
    from unimodal.data.data_config import SourceConfig
    from unimodal.data.sample_documents import check_code_sources

    sources = [SourceConfig(name="t", kind="text"), SourceConfig(name="v", kind="caption_video")]
    check_code_sources(sources, av_vocab, seq_len=2 * 18 + 5)   # <bos> x <bov> 36 codes <eov> <eos>
    with pytest.raises(ConfigError, match=r"data\.seq_len=40: a video document needs at least 41 "
                                          r"tokens \(<bos> prompt <bov> \+ 2 maps of 18 codes"):
        check_code_sources(sources, av_vocab, seq_len=40)
    with pytest.raises(ConfigError, match=r"data\.sources\[1\]\.kind=caption_video needs the code "
                                          r"modality 'video' in the vocabulary"):
        check_code_sources(sources, vocab, seq_len=512)   # an image-only vocabulary
