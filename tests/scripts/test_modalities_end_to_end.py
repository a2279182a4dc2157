"""One model, all modalities, through the scripts: tiny audio and video tokenizers, their clips
encoded by tokenizers/encode.py, a mixed model (text, images, audio, video) trained by
train/pretrain.py, and eval/sample.py writing a valid WAV, GIF and PNG from its export."""

import importlib.util
import json
import math
import wave

import pytest
from PIL import Image

from mixture_fixtures import code_shards, text_shards
from modality_fixtures import save_random_tokenizer, tiny_audio_config, tiny_video_config
from process_fixtures import three_step_run
from unified_fixtures import load_script, make_assets

pytestmark = pytest.mark.slow  # an end-to-end training run (tests/conftest.py starts it first)


def encode(tokenizer, out, source, samples):
    load_script("tokenizers/encode.py").main(
        [f"tokenizer={tokenizer}", f"out_dir={out}", f"data.source={source}",
         f"data.num_samples={samples}", "data.num_workers=0", f"shard_size={samples}",
         "device=cpu"])
    return str(out / "shard-000000.tar")


def test_a_mixed_model_trains_on_every_modality_and_samples_each(tmp_path):
    text_model, tok_dir, _, vocab, _ = make_assets(tmp_path / "assets")
    audio_tok = save_random_tokenizer(tiny_audio_config(), tmp_path / "audio_tok")
    video_tok = save_random_tokenizer(tiny_video_config(), tmp_path / "video_tok")
    audio = encode(audio_tok, tmp_path / "audio_codes", "notes", 12)
    video = encode(video_tok, tmp_path / "video_codes", "moving_shapes", 8)
    text = text_shards(tmp_path / "text", "text", 1, 30, vocab)
    t2i = code_shards(tmp_path / "t2i", "t2i", 1, 20, "caption_images")
    out = tmp_path / "run"
    log = three_step_run(
        tmp_path / "mix.yaml", text_model, tok_dir,
        [("text", "text", text, 0.25), ("t2i", "caption_images", t2i, 0.25),
         ("audio", "caption_audio", audio, 0.25), ("video", "caption_video", video, 0.25)], out,
        vocab={"modalities": [{"name": "audio", "tokenizer": str(audio_tok)},
                              {"name": "video", "tokenizer": str(video_tok)}]})
    for key in ("text_loss", "image_loss", "audio_loss", "video_loss"):  # 0 = no such tokens
        assert all(math.isfinite(r[key]) and r[key] > 0 for r in log), key

    sample = load_script("eval/sample.py").main
    common = [f"checkpoint={out / 'export'}", "device=cpu", "sampling.temperature=1"]
    sample(common + [f"out={tmp_path / 'wav'}", "modality=audio",
                     'prompts=["three rising notes, square wave, loud"]'])
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == ["00000.wav", "samples.json"]
    with wave.open(str(tmp_path / "wav" / "00000.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.getnframes() == 1600
    sample(common + [f"out={tmp_path / 'gif'}", "modality=video", "images_per_prompt=2",
                     "prompts=[a red circle moves left]"])
    assert sorted(p.name for p in (tmp_path / "gif").iterdir()) == ["00000.gif", "00001.gif",
                                                                    "samples.json"]
    with Image.open(tmp_path / "gif" / "00000.gif") as gif:
        assert gif.format == "GIF" and gif.size == (32, 32) and gif.n_frames >= 1
    if importlib.util.find_spec("av") is not None:   # the video extra: MP4 files
        from unimodal.data.video_files import load_mp4

        sample(common + [f"out={tmp_path / 'mp4'}", "modality=video", "video_format=mp4",
                         "prompts=[a red circle moves left]"])
        assert load_mp4(tmp_path / "mp4" / "00000.mp4").shape == (4, 32, 32, 3)
    sample(common + [f"out={tmp_path / 'png'}", "prompts=[a red circle]"])
    with Image.open(tmp_path / "png" / "00000.png") as png:
        assert png.format == "PNG" and png.size == (32, 32)
    score = load_script("eval/modality_score.py").main
    report = score(common + ["modality=video", "prompts=3", "keep=1", f"out={tmp_path / 'score'}"])
    assert report["prompts"] == 3 and 0 <= report["accuracy"]["prompt"] <= 1
    assert json.loads((tmp_path / "score" / "modality_score.json").read_text())["accuracy"] == \
        report["accuracy"]
    assert [p.name for p in (tmp_path / "score").glob("*.gif")] == ["000.gif"]
    with pytest.raises(ValueError, match="class_ids is for images; modality=audio"):
        sample(common + [f"out={tmp_path / 'x'}", "modality=audio", "class_ids=[1]"])
    with pytest.raises(ValueError, match=r"no code modality 'speech'"):
        sample(common + [f"out={tmp_path / 'x'}", "modality=speech", "prompts=[a note]"])
    assert not (tmp_path / "x").exists()
