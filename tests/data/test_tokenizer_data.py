"""data.* of tokenizer training and encoding (unimodal/data/tokenizer_data.py): each modality
accepts only its own sources, and a bad value is refused naming the key."""

import pytest

from unimodal.config import ConfigError
from unimodal.data.tokenizer_data import TokenizerDataConfig


def test_each_modality_takes_its_own_sources():
    TokenizerDataConfig(source="notes").validate_audio()
    TokenizerDataConfig(source="moving_shapes").validate_video()
    with pytest.raises(ConfigError, match=r"data.source='moving_shapes': model.modality=audio"):
        TokenizerDataConfig(source="moving_shapes").validate_audio()
    with pytest.raises(ConfigError, match=r"data.source='notes': model.modality=video"):
        TokenizerDataConfig(source="notes").validate_video()
    with pytest.raises(ConfigError, match=r"data.path='': required for data.source='folder'"):
        TokenizerDataConfig(source="folder").validate_audio()


@pytest.mark.parametrize("key, value", [("num_samples", 0), ("heldout_samples", -1),
                                        ("num_workers", -1), ("max_bad_fraction", 1.5)])
def test_counts_are_checked_by_key(key, value):
    with pytest.raises(ConfigError, match=rf"data\.{key}={value}"):
        TokenizerDataConfig(source="notes", **{key: value}).validate_audio()
