"""tokenizers/encode.py with audio and video tokenizers: the tokenizer's modality picks the data
(encode_sources.py), the shards hold the codes that tokenizer gives each clip, and data that does
not fit the modality is refused naming the key."""

import pytest
import torch
import webdataset as wds

from modality_fixtures import save_random_tokenizer, tiny_audio_config, tiny_video_config
from unified_fixtures import load_script
from unimodal.config import ConfigError
from unimodal.data.audio_sources import AudioNotesClips
from unimodal.data.moving_shapes import ChannelsFirstClips, MovingShapesDataset
from unimodal.tokenizer.encode_shards import noise_seed, read_code_sample
from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer


def encode(tokenizer, out, *extra):
    return load_script("tokenizers/encode.py").main(
        [f"tokenizer={tokenizer}", f"out_dir={out}", "data.num_samples=5", "data.num_workers=0",
         "shard_size=3", "batch_size=2", "device=cpu", "seed=3", *extra])


def read_back(out) -> list[dict]:
    shards = sorted(str(p) for p in out.glob("shard-*.tar"))
    return [read_code_sample(s) for s in wds.WebDataset(shards, shardshuffle=False)]


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_clips_encode_into_shards_whose_codes_round_trip(modality, tmp_path):
    cfg = tiny_audio_config() if modality == "audio" else tiny_video_config()
    folder = save_random_tokenizer(cfg, tmp_path / "tok")
    source = "notes" if modality == "audio" else "moving_shapes"
    result = encode(folder, tmp_path / "codes", f"data.source={source}")
    assert (result["written"], result["shards"]) == (5, 2)
    if modality == "audio":
        clips, key = AudioNotesClips(5, cfg.sample_rate, cfg.clip_samples, seed=0), "waveform"
    else:
        clips, key = ChannelsFirstClips(MovingShapesDataset(5, cfg.num_frames, cfg.image_size, 0)), "video"
    tok = load_tokenizer(folder)
    samples = read_back(tmp_path / "codes")
    assert [s["key"] for s in samples] == [clips[i]["key"] for i in range(5)]
    for i, sample in enumerate(samples):
        item = clips[i]
        assert sample["caption"] == item["caption"] and sample["class_id"] == -1
        assert sample["seed"] == noise_seed(3, item["key"])
        assert sample["codes"].shape == (cfg.code_maps, *cfg.grid)
        assert torch.equal(sample["codes"], tok.encode(item[key][None], [sample["seed"]])[0])
    # codes -> the tokenizer's decoder: a signal of the tokenizer's input shape
    assert tok.decode(samples[0]["codes"][None]).shape == (1, *cfg.input_shape)


def test_data_of_another_modality_is_refused_naming_the_key(tmp_path):
    audio = save_random_tokenizer(tiny_audio_config(), tmp_path / "audio")
    video = save_random_tokenizer(tiny_video_config(), tmp_path / "video")
    with pytest.raises(ConfigError, match=r"data.source='shapes': model.modality=audio takes one "
                                          r"of \('notes', 'folder'\)"):
        encode(audio, tmp_path / "a", "data.source=shapes")
    with pytest.raises(ConfigError, match=r"data.source='notes': model.modality=video takes"):
        encode(video, tmp_path / "v", "data.source=notes")
    with pytest.raises(ConfigError, match=r"data.path='': required for data.source='folder'"):
        encode(audio, tmp_path / "a", "data.source=folder")
    assert not (tmp_path / "a").exists() and not (tmp_path / "v").exists()


def test_an_unreadable_audio_file_is_skipped_and_counted(tmp_path, capsys):
    """A folder of WAV files with one broken file: the readable clips are encoded with their
    sidecar captions, the broken one is skipped and reported by name."""
    from unimodal.data.audio_sources import write_wav
    from unimodal.data.image_sources import in_split

    names = [n for n in (f"clip{i}" for i in range(20)) if in_split(n, "train")][:3]
    folder = tmp_path / "wavs"
    folder.mkdir()
    for name in names[:2]:
        write_wav(folder / f"{name}.wav", 0.3 * torch.sin(torch.arange(2000) * 0.1), 16000)
        (folder / f"{name}.txt").write_text(f"{name}: one note, sine wave, quiet")
    (folder / f"{names[2]}.wav").write_bytes(b"RIFF not really a wave file")
    tok = save_random_tokenizer(tiny_audio_config(), tmp_path / "tok")
    result = encode(tok, tmp_path / "codes", "data.source=folder", f"data.path={folder}")
    assert result["written"] == 2
    assert [s["caption"] for s in read_back(tmp_path / "codes")] == \
        [f"{n}: one note, sine wave, quiet" for n in names[:2]]
    assert f"{names[2]}.wav" in capsys.readouterr().out   # the bad-data summary names the file
