"""The modality registry: image first with its ids unchanged, further modalities (audio, video)
appended as contiguous marker + code ranges, saved and validated, masks over exactly a
modality's codes, and the loss keys the pretrainer logs."""

import json
from dataclasses import dataclass, field

import pytest
import torch

from unified_fixtures import load_script
from unimodal.config import ConfigError, load_config
from unimodal.model.modalities import (CodeModalityConfig, additive_logits_mask, logits_mask,
                                       loss_keys)
from unimodal.model.sampling_rules import gumbel_noise
from unimodal.model.vocabulary import VOCAB_FILE, Vocabulary, VocabularyConfig

AUDIO = CodeModalityConfig("audio", codebook_size=32, code_maps=8, grid=[50])
VIDEO = CodeModalityConfig("video", codebook_size=16, code_maps=2, grid=[2, 4, 4])


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("sp") / "text.model"
    load_script("tokenizers/train_text.py").main(["shapes_corpus=300", f"out={out}", "vocab_size=300"])
    return str(out)


def make(text_model, modalities=(), **overrides) -> Vocabulary:
    cfg = dict(text_tokenizer=text_model, num_classes=3, codebook_size=64, code_maps=4, grid=[8, 8])
    return Vocabulary.build(VocabularyConfig(**{**cfg, **overrides}, modalities=list(modalities)))


def test_appended_ranges_are_contiguous_disjoint_and_move_no_id(text_model):
    image_only, vocab = make(text_model), make(text_model, [AUDIO, VIDEO])
    assert list(vocab.ranges) == ["text", "special", "image", "audio_special", "audio",
                                  "video_special", "video"]
    for name, r in image_only.ranges.items():  # every earlier id stays where it was
        assert vocab.ranges[name] == r
    for name in ("bos_id", "eos_id", "pad_id", "boi_id", "eoi_id", "null_id", "code_offset"):
        assert getattr(vocab, name) == getattr(image_only, name), name
    owner = torch.zeros(vocab.size, dtype=torch.long)
    for start, length in vocab.ranges.values():
        owner[start:start + length] += 1
    assert bool((owner == 1).all())
    image, audio, video = vocab.modalities
    assert image == image_only.modality("image") and image.markers == ("<boi>", "<eoi>")
    end = image_only.size
    assert (audio.markers, audio.begin_id, audio.end_id, audio.code_offset) == (("<boa>", "<eoa>"), end, end + 1, end + 2)
    assert (audio.code_slice, audio.code_maps, audio.grid, audio.tokens_per_map) == (slice(end + 2, end + 34), 8, (50,), 50)
    assert (video.markers, video.begin_id, video.code_offset) == (("<bov>", "<eov>"), end + 34, end + 36)
    assert video.tokens_per_map == 32 and vocab.size == end + 36 + 16
    assert vocab.modality("video") is video
    with pytest.raises(ValueError, match=r"no code modality 'speech'.*\['image', 'audio', 'video'\]"):
        vocab.modality("speech")
    described = vocab.describe()
    assert "<boa>=" in described and "grid 2x4x4" in described and "audio_special" in described


def test_marker_tags_avoid_taken_prefixes(text_model):
    vocab = make(text_model, [CodeModalityConfig("speech", 8, 1, [4]), CodeModalityConfig("sound", 8, 1, [4]),
                              CodeModalityConfig("ink", 8, 1, [4])])
    # "s" would spell <bos>/<eos> and "i" is image's
    assert [m.markers[0] for m in vocab.modalities] == ["<boi>", "<bosp>", "<boso>", "<boin>"]


def test_save_load_round_trip_with_audio_and_video(tmp_path, text_model):
    vocab = make(text_model, [AUDIO, VIDEO])
    vocab.save(tmp_path / "v")
    layout = json.loads((tmp_path / "v" / VOCAB_FILE).read_text())
    assert layout["version"] == 3
    assert list(layout)[:4] == ["version", "text", "image", "modalities"]
    assert layout["modalities"]["audio"] == {"codebook_size": 32, "code_maps": 8, "grid": [50],
                                             "markers": ["<boa>", "<eoa>"]}
    loaded = Vocabulary.load(tmp_path / "v")
    loaded.check_compatible(vocab)
    assert loaded.modalities == vocab.modalities and loaded.size == vocab.size
    assert loaded.describe() == vocab.describe()
    layout["version"] = 4
    (tmp_path / "v" / VOCAB_FILE).write_text(json.dumps(layout))
    with pytest.raises(ValueError, match="layout version 4, this code reads versions 1 to 3"):
        Vocabulary.load(tmp_path / "v")


def test_mismatches_name_the_modality_and_the_field(text_model):
    vocab = make(text_model, [AUDIO, VIDEO])
    vocab.check_tokenizer("audio", 32, 8, [50])
    vocab.check_tokenizer("video", 16, 2, (2, 4, 4))
    with pytest.raises(ValueError, match="vocabulary modality 'audio': code_maps is 8 in the vocabulary, the tokenizer has 10"):
        vocab.check_tokenizer("audio", 32, 10, [50])
    with pytest.raises(ValueError, match=r"vocabulary modality 'video': grid is \[2, 4, 4\] in the vocabulary, the tokenizer has \[4, 4, 4\]"):
        vocab.check_tokenizer("video", 16, 2, [4, 4, 4])
    with pytest.raises(ValueError, match="no code modality 'speech'"):
        vocab.check_tokenizer("speech", 16, 2, [4])
    other = make(text_model, [AUDIO, CodeModalityConfig("video", 16, 4, [2, 4, 4])])
    with pytest.raises(ValueError, match=r"at modalities\.video\.code_maps: this vocabulary has 2, the other has 4"):
        vocab.check_compatible(other)
    with pytest.raises(ValueError, match=r"at modalities\.video: this vocabulary has \{"):
        vocab.check_compatible(make(text_model, [AUDIO]))
    with pytest.raises(ValueError, match=r"at modalities: this vocabulary has \{"):
        vocab.check_compatible(make(text_model))


def test_config_errors_name_the_key(text_model):
    for bad, key in ((dict(name="Audio"), r"modalities\[0\]\.name='Audio'"),
                     (dict(name="image"), r"modalities\[0\]\.name='image'"),
                     (dict(code_maps=0), r"modalities\[0\]\.code_maps=0"),
                     (dict(codebook_size=0), r"modalities\[0\]\.codebook_size=0"),
                     (dict(grid=[1, 2, 3, 4]), r"modalities\[0\]\.grid=\[1, 2, 3, 4\]"),
                     (dict(grid=[]), r"modalities\[0\]\.grid=\[\]")):
        with pytest.raises(ConfigError, match=r"vocab\." + key):
            make(text_model, [CodeModalityConfig(**{**vars(AUDIO), **bad})])
    with pytest.raises(ConfigError, match=r"vocab\.modalities\[1\]\.name='audio': named twice"):
        make(text_model, [AUDIO, AUDIO])

    @dataclass
    class ModelFile:
        vocab: VocabularyConfig = field(default_factory=VocabularyConfig)

    cfg = load_config(ModelFile, overrides=[
        f"vocab.text_tokenizer={text_model}", "vocab.codebook_size=64", "vocab.code_maps=4",
        "vocab.grid=[8,8]", "vocab.modalities=[{name: audio, codebook_size: 32, code_maps: 8, grid: [50]}]"])
    assert Vocabulary.build(cfg.vocab).modality("audio").grid == (50,)


def test_logits_mask_allows_exactly_the_modality_codes(text_model):
    vocab = make(text_model, [AUDIO, VIDEO])
    for m in vocab.modalities:
        allowed = logits_mask(vocab, m.name)
        assert allowed.shape == (vocab.size,) and allowed.dtype == torch.bool
        assert torch.equal(allowed.nonzero().flatten(), torch.arange(m.code_offset, m.code_offset + m.codebook_size))
        additive = additive_logits_mask(vocab, m.name)
        assert bool((additive[allowed] == 0).all()) and bool(torch.isneginf(additive[~allowed]).all())


def test_masked_full_softmax_equals_the_image_samplers_code_slice(text_model):
    """Image sampling (and the image loss) take a softmax over the code slice of the head; the
    registry's mask over the full vocabulary gives the same distribution, and the same code for
    the same Gumbel noise on those columns, so a sampler may use either."""
    vocab = make(text_model, [AUDIO])
    image = vocab.modality("image")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, vocab.size, generator=gen) * 3
    masked = logits + additive_logits_mask(vocab, "image")
    sliced = logits[:, image.code_slice]
    torch.testing.assert_close(torch.log_softmax(masked, -1)[:, image.code_slice],
                               torch.log_softmax(sliced, -1), rtol=0, atol=1e-6)
    noise = gumbel_noise(masked.shape, masked.device, torch.Generator().manual_seed(1))
    full_pick = (masked / 0.7 + noise).argmax(-1)
    slice_pick = (sliced / 0.7 + noise[:, image.code_slice]).argmax(-1)
    assert torch.equal(full_pick, slice_pick + image.code_offset)


def test_loss_keys_follow_the_registry(text_model):
    assert loss_keys(make(text_model)) == ("loss", "text_loss", "image_loss")  # as logged before
    assert loss_keys(make(text_model, [AUDIO, VIDEO])) == ("loss", "text_loss", "image_loss",
                                                           "audio_loss", "video_loss")
