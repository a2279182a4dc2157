"""The data section of a pretraining config (unimodal/data/data_config.py): a valid config passes,
and each bad value fails with a ConfigError naming its key (the vocabulary-dependent checks are
mixture.check_against_vocabulary, tested in test_mixture.py)."""

import dataclasses

import pytest

from unimodal.config import ConfigError
from unimodal.data.data_config import DataConfig, SourceConfig


@pytest.fixture
def shard_files(tmp_path):
    for i in range(3):
        (tmp_path / f"s-{i:03d}.tar").write_bytes(b"")
    return str(tmp_path / "s-{000..002}.tar")


def config(shards: str, **kw) -> DataConfig:
    return DataConfig(sources=[SourceConfig(name="web", kind="text", shards=shards),
                               SourceConfig(name="img", kind="class_images", shards=shards,
                                            weight=2.5)], **kw)


def test_a_good_config_passes_and_remote_shards_are_not_checked(shard_files):
    config(shard_files).validate()
    config(shard_files, step_weights=[0.0, 1.0, 2.0], blocks_per_image=2, cfg_drop=1.0,
           num_workers=0, max_bad_fraction=0.0).validate()
    remote = DataConfig(sources=[SourceConfig(name="r", shards="https://host/s-{000..009}.tar,"
                                                               "pipe:cat x.tar")])
    remote.validate()   # nothing local to look for


@pytest.mark.parametrize("source,match", [
    ({"name": ""}, r"data\.sources\[1\]\.name: required"),
    ({"kind": "audio"}, r"data\.sources\[1\]\.kind='audio': choose one of \('text', "),
    ({"weight": 0.0}, r"data\.sources\[1\]\.weight=0\.0: must be a finite number > 0"),
    ({"weight": float("nan")}, r"data\.sources\[1\]\.weight=nan"),
    ({"weight": float("inf")}, r"data\.sources\[1\]\.weight=inf"),
    ({"shards": "  "}, r"data\.sources\[1\]\.shards: required"),
    ({"name": "web"}, r"data\.sources\[1\]\.name='web': used twice"),
])
def test_source_errors_name_the_source_and_key(shard_files, source, match):
    cfg = config(shard_files)
    cfg.sources[1] = dataclasses.replace(cfg.sources[1], **source)
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_missing_shards_are_counted_and_shown(shard_files, tmp_path):
    (tmp_path / "s-001.tar").unlink()
    cfg = config(shard_files)
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]\.shards='.*s-\{000\.\.002\}\.tar': "
                                          r"1 of 3 shard files not found, e.g. \['.*s-001\.tar'\]"):
        cfg.validate()


@pytest.mark.parametrize("key,value,match", [
    ("seq_len", 1, r"data\.seq_len=1: must be >= 2"),
    ("rows_per_batch", 0, r"data\.rows_per_batch=0: must be >= 1"),
    ("blocks_per_image", 0, r"data\.blocks_per_image=0: must be >= 1"),
    ("num_workers", -1, r"data\.num_workers=-1: must be >= 0"),
    ("seed", -3, r"data\.seed=-3: must be >= 0"),
    ("bad_check_after", 0, r"data\.bad_check_after=0: must be >= 1"),
    ("cfg_drop", 1.5, r"data\.cfg_drop=1\.5: must be in \[0, 1\]"),
    ("max_bad_fraction", -0.1, r"data\.max_bad_fraction=-0\.1: must be in \[0, 1\]"),
    ("step_weights", [1.0, -1.0], r"data\.step_weights=\[1\.0, -1\.0\]: each must be a finite"),
    ("step_weights", [1.0, float("nan")], r"data\.step_weights=.*each must be a finite"),
    ("step_weights", [0.0, 3.0, 0.0], r"needs at least data\.blocks_per_image=2 positive"),
])
def test_scalar_errors_name_the_key(shard_files, key, value, match):
    with pytest.raises(ConfigError, match=match):
        config(shard_files, **{key: value}).validate()


def test_empty_sources_and_the_prefix(shard_files):
    with pytest.raises(ConfigError, match=r"^data\.sources: empty"):
        DataConfig().validate()
    with pytest.raises(ConfigError, match=r"^study\.data\.seq_len=0"):
        config(shard_files, seq_len=0).validate("study.data")
