"""The tokenizer model: code round trips (images, audio, video), checkpoint round trips, clear
errors (the losses are in test_losses.py, the encoder and decoder in test_autoencoder.py)."""

import pytest
import torch

from unified_fixtures import tiny_rdpm_tokenizer
from unimodal.config import ConfigError, load_config
from unimodal.tokenizer.rdpm_tokenizer import (CONFIG_FILE, RDPMTokenizer, RDPMTokenizerConfig,
                                               load_tokenizer, load_tokenizer_config, save_tokenizer)
from unimodal.tokenizer.training_config import TokenizerTrainConfig


@pytest.fixture
def model():
    return tiny_rdpm_tokenizer(code_maps=5)


def test_decode_of_codes_equals_decoder_on_latent(model):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        recon, q = model(images, seeds=[1, 2, 3])
    codes = model.encode(images, [1, 2, 3])
    assert codes.shape == (3, 5, 8, 8) and torch.equal(codes, q.codes)
    torch.testing.assert_close(model.decode(codes), model.decoder(q.latent))
    torch.testing.assert_close(model.decode(codes), recon)


def test_save_load_round_trip(model, tmp_path):
    save_tokenizer(model, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(images, [4, 5]), model.encode(images, [4, 5]))
    with pytest.raises(FileNotFoundError, match="tokenizer.safetensors"):
        load_tokenizer(tmp_path)


def test_a_folder_saved_before_the_code_maps_rename_still_loads(model, tmp_path):
    """tokenizer.yaml files written before the rename name T `steps`; exports are user files."""
    save_tokenizer(model, tmp_path / "tok")
    config = tmp_path / "tok" / CONFIG_FILE
    assert "code_maps: 5" in config.read_text()
    config.write_text(config.read_text().replace("code_maps: 5", "steps: 5"))
    assert load_tokenizer_config(tmp_path / "tok").code_maps == 5
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.encode(images, [4, 5]), model.encode(images, [4, 5]))


def test_the_old_key_steps_fails_naming_code_maps(tmp_path):
    # model.steps sat beside train.steps (optimizer steps); a user's config must say which.
    with pytest.raises(ConfigError, match=r"command line: model\.steps was renamed to model\.code_maps"):
        load_config(TokenizerTrainConfig, None, ["model.steps=10"])
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  steps: 10\ntrain:\n  steps: 50\n")
    with pytest.raises(ConfigError, match=r"old\.yaml: model\.steps was renamed to model\.code_maps"):
        load_config(TokenizerTrainConfig, old)
    cfg = load_config(TokenizerTrainConfig, None, ["model.code_maps=1", "train.steps=50"])
    assert (cfg.model.code_maps, cfg.train.steps) == (1, 50)


def test_wrong_images_are_clear_errors(model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*image_size=32"):
        model.encode(torch.rand(1, 1, 32, 32), [0])
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode(torch.rand(1, 3, 64, 64), [0])
    with pytest.raises(ValueError, match="codes must be"):
        model.decode(torch.zeros(1, 5, 4, 4, dtype=torch.long))


def test_paper_preset_shapes():
    cfg = RDPMTokenizerConfig.from_size("paper_f16")
    assert (cfg.image_size, cfg.downsample, cfg.grid) == (256, 16, (16, 16))
    assert (cfg.codebook_size, cfg.latent_dim, cfg.code_maps, cfg.schedule) == (4096, 32, 10, "pow")


# --- audio: the same tokenizer with model.modality=audio (1-D convs, one code per hop) ---------
def audio(**kw):
    return RDPMTokenizerConfig.from_size("audio_tiny", **{"clip_samples": 3200, "base_channels": 8,
                                                          "codebook_size": 64, **kw})


def test_audio_round_trip_shapes_and_code_ranges(tmp_path):
    torch.manual_seed(0)
    model = RDPMTokenizer(audio()).eval()
    assert model.cfg.grid == (10,) and model.cfg.downsample == 320
    wave = (torch.rand(3, 1, 3200) * 2 - 1) * 0.5
    codes = model.encode(wave, [1, 2, 3])
    assert codes.shape == (3, 4, 10) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < 64
    recon = model.decode(codes)
    assert recon.shape == wave.shape
    with torch.no_grad():
        # z + (z'_T - z) in the forward vs z'_T from the codes: equal up to float rounding
        torch.testing.assert_close(recon, model(wave, seeds=[1, 2, 3])[0], atol=1e-4, rtol=1e-4)
    assert model.codes_to_latent(codes, upto=2).shape == (3, 8, 10)
    save_tokenizer(model, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg and torch.equal(loaded.encode(wave, [1, 2, 3]), codes)
    with pytest.raises(ValueError, match=r"\(B, 1, 3200\).*model\.clip_samples=3200"):
        model.encode(torch.zeros(1, 1, 3000), [0])
    with pytest.raises(ValueError, match=r"codes must be \(B, T<=4, 10\)"):
        model.decode(torch.zeros(1, 4, 8, dtype=torch.long))


def test_code_rate_in_tokens_and_bits_per_second():
    rate = RDPMTokenizerConfig.from_size("audio_16k").code_rate()
    # 16000 / (4*4*4*5) = 50 codes/s, T = 8 maps -> 400 tokens/s, log2(1024) = 10 bits each.
    assert rate == {"codes_per_second": 50.0, "tokens_per_second": 400.0, "bits_per_second": 4000.0}
    with pytest.raises(ValueError, match="model.modality='image'"):
        RDPMTokenizerConfig().code_rate()


@pytest.mark.parametrize("override, key", [
    ("model.clip_samples=3000", r"model\.clip_samples=3000 is not a positive multiple of the total "
                                r"stride 320 of model\.strides=\[4, 4, 4, 5\]"),
    ("model.strides=[4,4]", r"model\.strides"), ("model.modality=sound", r"model\.modality"),
    ("model.in_channels=2", r"model\.in_channels"), ("model.sample_rate=4000", r"model\.sample_rate"),
    ("model.upsample=cubic", r"model\.upsample"),
    # base 48 x mult 1 = 48 channels cannot be split into 32 GroupNorm groups: refused before
    # any training, naming the key (torch's own error named neither).
    ("model.base_channels=48", r"model\.base_channels=48: level width 48 x 1 = 48"),
])
def test_bad_audio_model_values_name_the_key(override, key):
    from tokenizer_training_fixtures import ROOT

    with pytest.raises(ConfigError, match=key):
        load_config(TokenizerTrainConfig, ROOT / "configs/rdpm_audio_tiny.yaml", [override])


# --- video: model.modality=video (3-D convs on (B, 3, F, H, W), per-axis level strides) ---------
def video(**kw):
    return RDPMTokenizerConfig.from_size("video_tiny", **{"base_channels": 8, "codebook_size": 64,
                                                          **kw})


def test_video_round_trip_shapes_and_code_ranges(tmp_path):
    torch.manual_seed(0)
    model = RDPMTokenizer(video()).eval()
    cfg = model.cfg
    # 8 frames at 32 px; strides (1,2,2) then (2,2,2): f4 in space, 2 in time
    assert cfg.level_strides == ((1, 2, 2), (2, 2, 2))
    assert (cfg.grid, cfg.downsample, cfg.temporal_downsample) == ((4, 8, 8), 4, 2)
    clips = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    codes = model.encode(clips, [1, 2])
    assert codes.shape == (2, 4, 4, 8, 8) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < 64
    recon = model.decode(codes)
    assert recon.shape == clips.shape
    with torch.no_grad():
        torch.testing.assert_close(recon, model(clips, seeds=[1, 2])[0], atol=1e-4, rtol=1e-4)
    assert model.codes_to_latent(codes, upto=2).shape == (2, 8, 4, 8, 8)
    save_tokenizer(model, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.cfg == model.cfg and torch.equal(loaded.encode(clips, [1, 2]), codes)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 32, 32\).*channels before frames"):
        model.encode(torch.zeros(1, 8, 3, 32, 32), [0])  # frames before channels: refused
    with pytest.raises(ValueError, match=r"codes must be \(B, T<=4, 4, 8, 8\)"):
        model.decode(torch.zeros(1, 4, 8, 8, 8, dtype=torch.long))


def test_video_tokens_per_clip():
    cfg = RDPMTokenizerConfig.from_size("video_64")
    # 8 frames / 2 x (64 / 8)^2 = 256 codes per clip, T = 8 maps, log2(1024) = 10 bits each
    assert cfg.grid == (4, 8, 8)
    assert cfg.code_rate() == {"codes_per_clip": 256, "tokens_per_clip": 2048,
                               "tokens_per_frame": 256.0, "bits_per_clip": 20480.0}
    assert video(temporal_strides=[2, 2], num_frames=16).grid == (4, 8, 8)  # temporal 4


@pytest.mark.parametrize("kw, key", [
    (dict(num_frames=9), r"model\.num_frames=9 is not a positive multiple of the temporal "
                         r"downsampling 2 of model\.temporal_strides=\[1, 2\]"),
    (dict(num_frames=8, temporal_strides=[4, 4]), r"model\.num_frames=8 is not a positive multiple"),
    (dict(temporal_strides=[2, 2, 2]), r"model\.temporal_strides: strides=\[2, 2, 2\]: need 2"),
    (dict(temporal_strides=[0, 2]), r"model\.temporal_strides"),
    (dict(image_size=30), r"model\.image_size=30 is not divisible"),
    (dict(in_channels=1), r"model\.in_channels=1: video frames are RGB"),
])
def test_bad_video_model_values_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        RDPMTokenizer(video(**kw))


def test_only_an_image_tokenizer_passes_where_images_are_required(model):
    from unimodal.tokenizer.rdpm_tokenizer import require_image_tokenizer

    require_image_tokenizer(model, "tok", "why")  # an image tokenizer passes
    for size, name in (("audio_tiny", "an audio"), ("video_tiny", "a video")):
        other = RDPMTokenizer(RDPMTokenizerConfig.from_size(size, base_channels=8))
        with pytest.raises(ConfigError, match=f"tokenizer=tok is {name} tokenizer; only images"):
            require_image_tokenizer(other, "tok", "only images")
