"""Prompt files: plain text, a JSON list, COCO captions; errors name the option."""

import json

import pytest

from unimodal.data.prompt_files import read_prompts


def test_read_prompts_formats(tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n\n  a blue   square \n")
    assert read_prompts(tmp_path / "p.txt") == ["a red circle", "a blue square"]
    (tmp_path / "p.json").write_text(json.dumps(["one", "two", "three"]))
    assert read_prompts(tmp_path / "p.json", max_prompts=2) == ["one", "two"]
    coco = {"images": [], "annotations": [
        {"image_id": 9, "id": 5, "caption": "nine, second"}, {"image_id": 9, "id": 2, "caption": "nine"},
        {"image_id": 3, "id": 7, "caption": "three"}]}
    (tmp_path / "captions_val2014.json").write_text(json.dumps(coco))
    assert read_prompts(tmp_path / "captions_val2014.json") == ["three", "nine"]
    with pytest.raises(FileNotFoundError, match="prompts="):
        read_prompts(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="prompts_file=.*no prompts"):
        (tmp_path / "empty.txt").write_text("\n  \n")
        read_prompts(tmp_path / "empty.txt", key="prompts_file")
