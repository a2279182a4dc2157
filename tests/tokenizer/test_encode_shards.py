"""tokenizers/encode.py end to end: shards hold the codes the tokenizer gives, deterministically,
and a rerun after a crash finishes only the missing shards."""

import io
import tarfile
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from unimodal.config import ConfigError
from unimodal.data.shapes import ShapesDataset
from unimodal.tokenizer.encode_shards import noise_seed, read_code_sample, shard_name
from unimodal.tokenizer.rdpm_tokenizer import (RDPMTokenizer, RDPMTokenizerConfig, load_tokenizer,
                                               save_tokenizer)

ROOT = Path(__file__).resolve().parents[2]


def load_script(rel):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_"), ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = RDPMTokenizerConfig(image_size=32, base_channels=8, channel_mult=[1, 2, 2], latent_dim=8,
                              codebook_size=64, code_maps=4)
    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(RDPMTokenizer(cfg), folder)
    return folder


def encode_args(tokenizer_dir, out, n=10):
    return [f"tokenizer={tokenizer_dir}", f"out_dir={out}", "data.source=shapes",
            "data.image_size=32", f"data.num_samples={n}", "data.num_workers=0",
            "shard_size=4", "batch_size=3", "device=cpu", "seed=7"]


def test_encode_writes_exact_codes_and_resumes(tokenizer_dir, tmp_path):
    encode = load_script("tokenizers/encode.py").main
    out = tmp_path / "codes"
    result = encode(encode_args(tokenizer_dir, out))
    assert result == {**result, "written": 10, "shards": 3}
    shards = sorted(out.glob("shard-*.tar"))
    assert [p.name for p in shards] == [shard_name(i) for i in range(3)]
    samples = [read_code_sample(s) for s in wds.WebDataset([str(p) for p in shards],
                                                           shardshuffle=False)]
    assert len(samples) == 10
    tok = load_tokenizer(tokenizer_dir)
    data = ShapesDataset(10, 32, seed=0)
    for i, s in enumerate(samples):
        item = data[i]
        assert s["key"] == item["key"] and s["class_id"] == item["class_id"]
        assert s["caption"] == item["caption"]
        assert s["seed"] == noise_seed(7, item["key"])
        assert s["codes"].shape == (4, 8, 8)
        assert torch.equal(s["codes"], tok.encode(item["image"][None], [s["seed"]])[0])
    with tarfile.open(shards[0]) as tar:
        member = tar.extractfile(f"{samples[0]['key']}.codes.npy").read()
        assert np.load(io.BytesIO(member)).dtype == np.uint16

    # A crash after shard 0: shard 1 was never finished, shard 2 left a partial .tmp file.
    first = shards[0].read_bytes()
    shards[1].unlink()
    shards[2].unlink()
    (out / (shard_name(2) + ".tmp")).write_bytes(b"partial")
    again = encode(encode_args(tokenizer_dir, out))
    assert again["written"] == 6  # only the missing shards
    assert shards[0].read_bytes() == first
    rerun = tmp_path / "rerun"
    encode(encode_args(tokenizer_dir, rerun))
    for p in shards:  # deterministic: byte-identical shards from a fresh run
        assert (rerun / p.name).read_bytes() == p.read_bytes()


def test_encode_refuses_a_folder_with_other_settings_unless_overwrite(tokenizer_dir, tmp_path):
    encode = load_script("tokenizers/encode.py").main
    out = tmp_path / "codes"
    encode(encode_args(tokenizer_dir, out, n=6))
    before = {p.name: p.read_bytes() for p in out.glob("shard-*.tar")}
    # Same settings (a faster device setting does not count): a resume that writes nothing.
    assert encode(encode_args(tokenizer_dir, out, n=6) + ["batch_size=5"])["written"] == 0
    other_seed = [a for a in encode_args(tokenizer_dir, out, n=6) if a != "seed=7"] + ["seed=8"]
    with pytest.raises(ConfigError, match=r"out_dir=.*other settings \(seed: 7 -> 8\).*overwrite=true"):
        encode(other_seed)
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.tar")} == before  # untouched
    # overwrite=true starts over: the shards equal a fresh run with the new seed.
    assert encode(other_seed + ["overwrite=true"])["written"] == 6
    fresh = tmp_path / "fresh"
    encode([a.replace(str(out), str(fresh)) for a in other_seed])
    for name in before:
        assert (out / name).read_bytes() == (fresh / name).read_bytes() != before[name]
    # Shards from somewhere else (no settings recorded) are not resumed either.
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / shard_name(0)).write_bytes(b"")
    with pytest.raises(ConfigError, match="1 shard file.*no readable settings"):
        encode(encode_args(tokenizer_dir, stray))


def test_encode_config_errors(tokenizer_dir, tmp_path):
    encode = load_script("tokenizers/encode.py").main
    with pytest.raises(ConfigError, match="tokenizer"):
        encode([f"out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="trained at 32"):
        encode(encode_args(tokenizer_dir, tmp_path)[:-1] + ["data.image_size=64"])
