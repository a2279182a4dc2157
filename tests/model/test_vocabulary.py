"""The unified vocabulary: a disjoint layout covering [0, size), text round trips through a
sentencepiece model (trained by tokenizers/train_text.py) and a locally built Hugging Face tokenizer,
self-contained save/load, and errors that name the field at fault."""

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from unimodal.config import ConfigError, load_config
from unimodal.data.text_corpus import shapes_text_corpus
from unimodal.model.vocabulary import BASE_SPECIALS, VOCAB_FILE, Vocabulary, VocabularyConfig
from unimodal.tokenizer.rdpm_tokenizer import RDPMTokenizerConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TEXTS = ["the red circle is on the left of the blue square.",
                "Zürich ✓ — unseen characters go through byte fallback",
                "two  spaces\nand a newline"]


def load_script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_"), ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_text = load_script("tokenizers/train_text.py").main


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    """A tiny sentencepiece model trained through the script on one .txt and one .jsonl file."""
    folder = tmp_path_factory.mktemp("sp")
    corpus = shapes_text_corpus(400)
    (folder / "a.txt").write_text("\n".join(corpus[:300]) + "\n\n")
    (folder / "b.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in corpus[300:]))
    out = folder / "tok" / "text.model"
    train_text([f"input=[{folder / 'a.txt'},{folder / 'b.jsonl'}]", "jsonl_field=body",
                f"out={out}", "vocab_size=320"])
    return out


def build_hf_tokenizer(folder: Path, bos_eos: bool = True) -> Path:
    """A byte-level BPE tokenizer trained on a few sentences, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(shapes_text_corpus(200), trainer)
    marks = dict(bos_token="<s>", eos_token="</s>") if bos_eos else {}
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", **marks).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return build_hf_tokenizer(tmp_path_factory.mktemp("hf"))


@pytest.fixture(params=["sentencepiece", "huggingface"])
def text_tokenizer(request, sp_model, hf_folder):
    return str(sp_model if request.param == "sentencepiece" else hf_folder)


def make(path, **overrides) -> Vocabulary:
    cfg = dict(text_tokenizer=str(path), num_classes=28, codebook_size=512, code_maps=10, grid=[8, 8])
    return Vocabulary.build(VocabularyConfig(**{**cfg, **overrides}))


# ---------------------------------------------------------------------------------------- layout
def test_ranges_are_disjoint_and_cover_all_ids(text_tokenizer):
    vocab = make(text_tokenizer)
    ranges = vocab.ranges
    assert list(ranges) == ["text", "special", "image"]
    owner = torch.zeros(vocab.size, dtype=torch.long)
    for start, length in ranges.values():
        owner[start:start + length] += 1
    assert bool((owner == 1).all()), "every id must belong to exactly one range"
    assert ranges["text"] == (0, vocab.text_size)
    assert ranges["image"] == (vocab.code_offset, vocab.codebook_size)
    assert vocab.size == vocab.code_offset + vocab.codebook_size
    assert "image" in vocab.describe() and str(vocab.size) in vocab.describe()


def test_specials_are_distinct_and_reuse_text_bos_eos(text_tokenizer):
    vocab = make(text_tokenizer)
    ids = [vocab.bos_id, vocab.eos_id, vocab.pad_id, vocab.boi_id, vocab.eoi_id, vocab.null_id]
    ids += [vocab.class_token(c) for c in range(vocab.num_classes)]
    assert len(set(ids)) == len(ids)
    special_start, special_count = vocab.ranges["special"]
    # Both test tokenizers define bos/eos, so those stay text ids and specials hold the rest.
    assert vocab.bos_id < vocab.text_size and vocab.eos_id < vocab.text_size
    assert special_count == len(BASE_SPECIALS) + vocab.num_classes
    assert all(special_start <= i < vocab.code_offset for i in ids[2:])


def test_bos_eos_added_when_text_tokenizer_lacks_them(tmp_path):
    vocab = make(build_hf_tokenizer(tmp_path / "plain", bos_eos=False), num_classes=0)
    assert vocab.ranges["special"][1] == len(BASE_SPECIALS) + 2
    assert vocab.text_size <= vocab.bos_id < vocab.code_offset
    assert vocab.text_size <= vocab.eos_id < vocab.code_offset and vocab.bos_id != vocab.eos_id
    ids = vocab.encode_text("a red square", bos=True, eos=True)
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert vocab.decode_text(ids) == "a red square"


def test_class_token_range_and_errors(sp_model):
    vocab = make(sp_model, num_classes=3)
    assert [vocab.class_token(c) for c in range(3)] == list(range(vocab.code_offset - 3, vocab.code_offset))
    for bad in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"class id .* valid class ids: 0\.\.2"):
            vocab.class_token(bad)
    with pytest.raises(ValueError, match=r"num_classes=0"):
        make(sp_model, num_classes=0).class_token(0)


def test_codes_map_into_the_image_range(sp_model):
    vocab = make(sp_model)
    codes = torch.randint(0, vocab.codebook_size, (10, 8, 8))
    ids = vocab.codes_to_ids(codes)
    assert bool(vocab.is_code(ids).all()) and torch.equal(vocab.ids_to_codes(ids), codes)
    other = torch.tensor([0, vocab.text_size - 1, vocab.boi_id, vocab.code_offset - 1, vocab.size])
    assert not bool(vocab.is_code(other).any())
    with pytest.raises(ValueError, match="codes must be in"):
        vocab.codes_to_ids(torch.tensor([vocab.codebook_size]))
    with pytest.raises(ValueError, match="not image codes"):
        vocab.ids_to_codes(other)


def test_image_only_ids_are_the_golden_layout(sp_model):
    """The ids of an image-only vocabulary as they were before the modality registry: none moved."""
    vocab = make(sp_model, num_classes=3, codebook_size=64)
    assert vocab.text_size == 320 and vocab.ranges == {"text": (0, 320), "special": (320, 7),
                                                       "image": (327, 64)}
    assert (vocab.boi_id, vocab.eoi_id, vocab.null_id, vocab.pad_id) == (320, 321, 322, 323)
    assert [vocab.class_token(c) for c in range(3)] == [324, 325, 326]
    assert (vocab.bos_id, vocab.eos_id, vocab.code_offset, vocab.size) == (1, 2, 327, 391)
    (image,) = vocab.modalities
    assert (image.name, image.begin_id, image.end_id, image.code_slice) == ("image", 320, 321, slice(327, 391))
    assert (image.codebook_size, image.code_maps, image.grid, image.tokens_per_map) == (64, 10, (8, 8), 64)


# ------------------------------------------------------------------------------------------ text
def test_text_round_trip(text_tokenizer):
    vocab = make(text_tokenizer)
    for text in SAMPLE_TEXTS:
        ids = vocab.encode_text(text)
        assert ids and all(0 <= i < vocab.text_size for i in ids)
        assert vocab.decode_text(ids) == text
        framed = vocab.encode_text(text, bos=True, eos=True)
        assert framed == [vocab.bos_id] + ids + [vocab.eos_id]
        assert vocab.decode_text(torch.tensor(framed)) == text
    # Decoding skips specials and image codes, e.g. a caption followed by an image.
    caption = vocab.encode_text(SAMPLE_TEXTS[0])
    mixed = caption + [vocab.boi_id, vocab.class_token(2), vocab.code_offset, vocab.size - 1, vocab.eoi_id]
    assert vocab.decode_text(mixed) == SAMPLE_TEXTS[0]


# ------------------------------------------------------------------------------------ save / load
def test_save_load_is_self_contained(tmp_path, text_tokenizer):
    source = tmp_path / "source"
    if Path(text_tokenizer).is_dir():
        shutil.copytree(text_tokenizer, source)
    else:
        source.mkdir()
        source = source / "text.model"
        shutil.copyfile(text_tokenizer, source)
    vocab = make(source)
    vocab.save(tmp_path / "ckpt")
    shutil.rmtree(source) if source.is_dir() else source.unlink()  # the original is gone
    shutil.copytree(tmp_path / "ckpt", tmp_path / "moved")  # and the checkpoint moves
    loaded = Vocabulary.load(tmp_path / "moved")
    loaded.check_compatible(vocab)
    for name in ("size", "text_size", "bos_id", "eos_id", "pad_id", "boi_id", "eoi_id", "null_id",
                 "code_offset", "codebook_size", "code_maps", "grid", "num_classes"):
        assert getattr(loaded, name) == getattr(vocab, name), name
    assert loaded.class_token(27) == vocab.class_token(27)
    for text in SAMPLE_TEXTS:
        assert loaded.encode_text(text, bos=True) == vocab.encode_text(text, bos=True)
    loaded.save(tmp_path / "moved")  # saving over its own folder is fine
    assert Vocabulary.load(tmp_path / "moved").size == vocab.size


def test_load_rejects_a_swapped_tokenizer(tmp_path, sp_model):
    make(sp_model).save(tmp_path / "ckpt")
    other = tmp_path / "other.model"
    train_text(["shapes_corpus=100", "seed=1", f"out={other}", "vocab_size=300"])
    shutil.copyfile(other, tmp_path / "ckpt" / "text_tokenizer.model")
    with pytest.raises(ValueError, match="does not match"):
        Vocabulary.load(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match=VOCAB_FILE):
        Vocabulary.load(tmp_path)


# ---------------------------------------------------------------------------------------- checks
def test_check_image_tokenizer_names_the_modality_and_field(sp_model):
    tiny = RDPMTokenizerConfig.from_size("tiny")  # K=512, T=10, 64 px / f8 = 8x8
    make(sp_model).check_image_tokenizer(tiny.codebook_size, tiny.code_maps, tiny.grid)
    vocab = make(sp_model, codebook_size=4096, code_maps=10, grid=[16, 16])
    at = "vocabulary modality 'image': "
    with pytest.raises(ValueError, match=at + "codebook_size is 4096 in the vocabulary, the tokenizer has 512"):
        vocab.check_image_tokenizer(512, 10, (16, 16))
    with pytest.raises(ValueError, match=at + "code_maps is 10 in the vocabulary, the tokenizer has 8"):
        vocab.check_tokenizer("image", 4096, 8, (16, 16))
    with pytest.raises(ValueError, match=at + r"grid is \[16, 16\] in the vocabulary, the tokenizer has \[8, 8\]"):
        vocab.check_image_tokenizer(4096, 10, [8, 8])


def test_check_compatible_names_the_first_difference(sp_model, hf_folder):
    vocab = make(sp_model)
    vocab.check_compatible(make(sp_model))
    with pytest.raises(ValueError, match=r"num_classes: this vocabulary has 28, the other has 10"):
        vocab.check_compatible(make(sp_model, num_classes=10))
    with pytest.raises(ValueError, match=r"image.codebook_size: this vocabulary has 512, the other has 256"):
        vocab.check_compatible(make(sp_model, codebook_size=256))
    with pytest.raises(ValueError, match=r"at text\..*a different text tokenizer"):
        vocab.check_compatible(make(hf_folder))


# Stated image geometry (in a unified model it is read from the image tokenizer).
GEOMETRY = dict(codebook_size=64, code_maps=4, grid=[8, 8])


def test_config_validation_names_the_key(tmp_path, sp_model):
    with pytest.raises(ConfigError, match=r"vocab.text_tokenizer='x': file not found"):
        VocabularyConfig(text_tokenizer="x").validate()
    with pytest.raises(ConfigError, match=r"vocab.text_tokenizer is empty"):
        VocabularyConfig().validate()
    with pytest.raises(ConfigError, match=r"model.vocab.text_tokenizer=.*Hugging Face"):
        VocabularyConfig(text_tokenizer=str(tmp_path)).validate("model.vocab")
    for bad, key in ((dict(code_maps=0), "vocab.code_maps"), (dict(codebook_size=0), "vocab.codebook_size"),
                     (dict(num_classes=-1), "vocab.num_classes"), (dict(grid=[16]), "vocab.grid")):
        with pytest.raises(ConfigError, match=key):
            VocabularyConfig(text_tokenizer=str(sp_model), **{**GEOMETRY, **bad}).validate()
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"vocab.text_tokenizer=.*junk.model.*cannot load"):
        Vocabulary.build(VocabularyConfig(text_tokenizer=str(tmp_path / "junk.model"), **GEOMETRY))


def test_config_is_an_omegaconf_section(sp_model):
    @dataclass
    class ModelFile:
        vocab: VocabularyConfig = field(default_factory=VocabularyConfig)

    cfg = load_config(ModelFile, overrides=[f"vocab.text_tokenizer={sp_model}", "vocab.grid=[8,8]",
                                            "vocab.codebook_size=64", "vocab.code_maps=4"])
    assert Vocabulary.build(cfg.vocab).grid == (8, 8)
    with pytest.raises(ConfigError, match="vocab.code_maps"):
        load_config(ModelFile, overrides=["vocab.code_maps=ten"])


def test_the_old_key_steps_is_refused_naming_code_maps(tmp_path, sp_model):
    """T was `vocab.steps`, next to `train.steps` (optimizer steps) in one YAML: a config that
    still says it fails naming the new key, on the command line and in a file."""
    @dataclass
    class ModelFile:
        vocab: VocabularyConfig = field(default_factory=VocabularyConfig)

    with pytest.raises(ConfigError, match=r"command line: vocab\.steps was renamed to vocab\.code_maps"):
        load_config(ModelFile, overrides=[f"vocab.text_tokenizer={sp_model}", "vocab.steps=4"])
    old = tmp_path / "old.yaml"
    old.write_text(f"vocab: {{text_tokenizer: {sp_model}, codebook_size: 64, steps: 4, grid: [8, 8]}}\n")
    with pytest.raises(ConfigError, match=r"old\.yaml: vocab\.steps was renamed to vocab\.code_maps"):
        load_config(ModelFile, old)
    # A file written before the rename (an export's unified.yaml) is mapped when asked.
    assert load_config(ModelFile, old, upgrade_renamed=True).vocab.code_maps == 4


def test_a_vocabulary_saved_before_the_rename_still_loads(tmp_path, sp_model):
    """vocabulary.json version 1 named T `image.steps`; load() maps it to `code_maps`."""
    vocab = make(sp_model, code_maps=7)
    vocab.save(tmp_path / "old")
    layout = json.loads((tmp_path / "old" / VOCAB_FILE).read_text())
    image = layout["image"]
    layout["version"] = 1
    layout["image"] = {"codebook_size": image["codebook_size"], "steps": image["code_maps"],
                       "grid": image["grid"]}
    (tmp_path / "old" / VOCAB_FILE).write_text(json.dumps(layout, indent=1))
    loaded = Vocabulary.load(tmp_path / "old")
    assert loaded.code_maps == 7
    loaded.check_compatible(vocab)


def test_an_image_only_vocabulary_is_still_written_and_read_as_version_2(tmp_path, sp_model):
    """Without further modalities vocabulary.json is the version-2 file, byte for byte (the
    layout dict below is the one written before the registry), and a version-2 folder loads."""
    vocab = make(sp_model, num_classes=2, code_maps=7)
    vocab.save(tmp_path / "v2")
    written = (tmp_path / "v2" / VOCAB_FILE).read_text()
    layout = json.loads(written)
    assert list(layout) == ["version", "text", "image", "num_classes", "specials", "ranges"]
    assert layout["version"] == 2 and layout["image"] == {"codebook_size": 512, "code_maps": 7, "grid": [8, 8]}
    assert layout["specials"] == ["<boi>", "<eoi>", "<null>", "<pad>", "<class_0>", "<class_1>"]
    assert layout["ranges"] == {"text": [0, 320], "special": [320, 6], "image": [326, 512]}
    assert written == json.dumps(layout, indent=1)
    loaded = Vocabulary.load(tmp_path / "v2")
    loaded.check_compatible(vocab)
    assert loaded.modalities == vocab.modalities and len(loaded.modalities) == 1


# ----------------------------------------------------------------------------------- train_text.py
def test_train_text_errors(tmp_path):
    out = str(tmp_path / "t.model")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_text([f"input=[{tmp_path / 'missing.txt'}]", f"out={out}"])
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty corpus.*blank.txt"):
        train_text([f"input=[{tmp_path / 'blank.txt'},{tmp_path / 'empty.jsonl'}]", f"out={out}"])
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no string field 'text'"):
        train_text([f"input=[{tmp_path / 'bad.jsonl'}]", f"out={out}"])
    with pytest.raises(ConfigError, match="out=.*t.bin.*must end in .model"):
        train_text(["shapes_corpus=10", f"out={tmp_path / 't.bin'}"])
    with pytest.raises(ConfigError, match="exactly one of input"):
        train_text([f"input=[{tmp_path / 'bad.jsonl'}]", "shapes_corpus=10", f"out={out}"])
    assert not Path(out).exists()
