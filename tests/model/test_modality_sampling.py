"""Sampling audio and video codes (unimodal/model/modality_sampling.py): greedy decoding with the
KV cache equals a full forward pass per step over the masked full-vocabulary softmax; samples do
not depend on their batch; only the modality's codes can come out; bad input is refused first.
Also the further modalities' tokenizers in a checkpoint (export.py) and their geometry read from
the tokenizer folder (UnifiedModelConfig.resolve_image_geometry)."""

import copy

import pytest
import torch

from modality_fixtures import save_random_tokenizer, tiny_audio_config, tiny_video_config
from unified_fixtures import causal_mask, make_assets, tiny_model
from unimodal.config import ConfigError
from unimodal.model.export import load_modality_tokenizer, load_unified, save_unified
from unimodal.model.modalities import CodeModalityConfig, additive_logits_mask, code_prompt
from unimodal.model.modality_sampling import generate_modality, sample_modality_codes
from unimodal.model.sampling_rules import ImageSamplingConfig
from unimodal.model.unified import UnifiedModelConfig
from unimodal.model.vocabulary import Vocabulary

CAPTIONS = ["three rising notes, square wave", "one low note"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modality_sampling")
    _, tok_dir, tok, _, vocab_cfg = make_assets(folder)
    audio_dir = save_random_tokenizer(tiny_audio_config(), folder / "audio_tok")
    video_dir = save_random_tokenizer(tiny_video_config(), folder / "video_tok")
    vocab_cfg.modalities = [CodeModalityConfig(name="audio", tokenizer=str(audio_dir)),
                            CodeModalityConfig(name="video", tokenizer=str(video_dir))]
    cfg = UnifiedModelConfig(vocab=vocab_cfg, image_tokenizer=str(tok_dir))
    cfg.resolve_image_geometry()   # K, T and grid of audio and video from their tokenizers
    vocab = Vocabulary.build(vocab_cfg)
    model = tiny_model(vocab, vocab_cfg, tok, tok_dir).eval()
    return folder, model, tok


def test_geometry_comes_from_the_modality_tokenizers(setup):
    _, model, _ = setup
    audio, video = model.vocab.modality("audio"), model.vocab.modality("video")
    assert (audio.codebook_size, audio.code_maps, audio.grid) == (32, 2, (5,))
    assert (video.codebook_size, video.code_maps, video.grid) == (32, 2, (2, 4, 4))


def test_greedy_codes_equal_a_full_forward_with_the_masked_softmax(setup):
    model = copy.deepcopy(setup[1])
    with torch.no_grad():   # a head that prefers text ids: the mask must keep them out
        model.backbone.head_weight[: model.vocab.text_size] *= 10
    cfg = ImageSamplingConfig(cfg_scale=0.0, temperature=0.0)
    codes = sample_modality_codes(model, "audio", CAPTIONS[:1], cfg)
    audio = model.vocab.modality("audio")
    assert codes.shape == (1, 2, 5)
    ids = code_prompt(model.vocab, "audio", CAPTIONS[0])
    mask = additive_logits_mask(model.vocab, "audio")
    with torch.no_grad():
        for _ in range(audio.code_maps * audio.tokens_per_map):
            x = torch.tensor([ids])
            hidden, _ = model.backbone(model.backbone.embed(x), torch.arange(len(ids))[None],
                                       causal_mask(x))
            logits = hidden[0, -1] @ model.backbone.head_weight.t()
            assert int(logits.argmax()) < model.vocab.text_size   # unmasked, a text id would win
            ids.append(int((logits + mask).argmax()))
    reference = torch.tensor(ids[-10:]) - audio.code_offset
    assert torch.equal(codes.flatten(), reference)


def test_samples_do_not_depend_on_their_batch_and_stay_in_range(setup):
    _, model, _ = setup
    cfg = ImageSamplingConfig(cfg_scale=2.0, temperature=1.0, seed=5)
    both = sample_modality_codes(model, "video", CAPTIONS, cfg)
    second = sample_modality_codes(model, "video", CAPTIONS[1:], cfg, seeds=[6])
    assert both.shape == (2, 2, 2, 4, 4)
    assert torch.equal(both[1], second[0])
    assert not torch.equal(both[0], both[1])
    assert int(both.min()) >= 0 and int(both.max()) < 32


def test_bad_input_is_refused_before_sampling(setup):
    _, model, _ = setup
    cfg = ImageSamplingConfig()
    with pytest.raises(ValueError, match=r"no code modality 'speech'.*\['image', 'audio', 'video'\]"):
        sample_modality_codes(model, "speech", CAPTIONS, cfg)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sample_modality_codes(model, "audio", ["a note", "  "], cfg)
    with pytest.raises(ValueError, match=r"prompt 0 is \d+ tokens; .* leaves 2038"):
        sample_modality_codes(model, "audio", ["note " * 3000], cfg)
    with pytest.raises(ValueError, match="nothing to sample"):
        sample_modality_codes(model, "audio", [], cfg)


def test_checkpoint_carries_the_modality_tokenizers(setup, tmp_path):
    folder, model, tok = setup
    save_unified(model, tok, tmp_path / "ckpt")
    loaded, _ = load_unified(tmp_path / "ckpt")
    audio = load_modality_tokenizer(tmp_path / "ckpt", loaded.vocab, "audio")
    assert audio.cfg.modality == "audio" and audio.cfg.grid == (5,)
    cfg = ImageSamplingConfig(cfg_scale=0.0, temperature=1.0)
    clips = generate_modality(loaded, audio, "audio", CAPTIONS, cfg, batch_size=1)
    assert clips.shape == (2, 1, 1600) and clips.abs().max() <= 1
    video = load_modality_tokenizer(tmp_path / "ckpt", loaded.vocab, "video")
    with pytest.raises(ValueError, match=r"vocabulary modality 'audio': grid is \[5\] in the "
                                         r"vocabulary, the tokenizer has \[2, 4, 4\]"):
        generate_modality(loaded, video, "audio", CAPTIONS, cfg)
    with pytest.raises(ValueError, match="no code modality 'speech'"):
        load_modality_tokenizer(tmp_path / "ckpt", loaded.vocab, "speech")


def test_modality_tokenizer_config_errors_name_the_key(setup):
    folder = setup[0]
    _, tok_dir, _, _, vocab_cfg = make_assets(folder)
    for tokenizer, message in ((folder / "nope", r"modalities\[0\]\.tokenizer=.*nope.*no tokenizer"),
                               (tok_dir, r"modalities\[0\]\.tokenizer=.* is an image tokenizer")):
        vocab_cfg.modalities = [CodeModalityConfig(name="audio", tokenizer=str(tokenizer))]
        with pytest.raises(ConfigError, match=message):
            UnifiedModelConfig(vocab=vocab_cfg, image_tokenizer=str(tok_dir)).resolve_image_geometry()
    vocab_cfg.modalities = [CodeModalityConfig(name="audio", tokenizer=str(folder / "audio_tok"),
                                               code_maps=3)]
    with pytest.raises(ConfigError, match=r"model\.vocab\.modalities\[0\]\.code_maps=3 but its "
                                          r"tokenizer .* has 2"):
        UnifiedModelConfig(vocab=vocab_cfg, image_tokenizer=str(tok_dir)).resolve_image_geometry()


def test_a_modality_tokenizer_trained_with_noise_is_warned_about(setup):
    # Its codes depend on eps_t, which a plain next-token document never shows the model.
    folder = setup[0]
    _, tok_dir, _, _, vocab_cfg = make_assets(folder)
    noisy = save_random_tokenizer(tiny_audio_config(noise_scale=1.0), folder / "noisy_audio_tok")
    vocab_cfg.modalities = [CodeModalityConfig(name="audio", tokenizer=str(noisy))]
    with pytest.warns(UserWarning, match=r"modalities\[0\]\.tokenizer=.*noise_scale=1\.0.*noise_scale=0"):
        UnifiedModelConfig(vocab=vocab_cfg, image_tokenizer=str(tok_dir)).resolve_image_geometry()
