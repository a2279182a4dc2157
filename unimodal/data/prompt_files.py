"""Prompt files that users pass to the sampling and evaluation scripts."""

from __future__ import annotations

import json
from pathlib import Path


def read_prompts(path: str | Path, max_prompts: int = 0, key: str = "prompts") -> list[str]:
    """Prompts from a text file (one per line), a JSON list, or COCO captions JSON (one caption per
    image: the lowest annotation id, images in id order). Errors name the option `key`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{key}={path}: not UTF-8 text (byte {err.start})") from None
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "annotations" in data:
            first: dict[int, tuple[int, str]] = {}
            for ann in data["annotations"]:
                key = ann["image_id"]
                if key not in first or ann.get("id", 0) < first[key][0]:
                    first[key] = (ann.get("id", 0), ann["caption"])
            prompts = [first[k][1] for k in sorted(first)]
        elif isinstance(data, list) and all(isinstance(p, str) for p in data):
            prompts = list(data)
        else:
            raise ValueError(f"{key}={path}: expected COCO captions (with 'annotations') or a "
                             "JSON list of strings")
    else:
        prompts = text.splitlines()
    prompts = [" ".join(p.split()) for p in prompts if p.strip()]
    if not prompts:
        raise ValueError(f"{key}={path}: no prompts in the file")
    return prompts[:max_prompts] if max_prompts > 0 else prompts
