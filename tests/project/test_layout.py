"""The repository layout rules: one importable package, script folders that never become packages."""

import importlib.util
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_DIRS = ("tokenizers", "mixing", "train", "eval")


def test_script_folders_have_no_init():
    for name in SCRIPT_DIRS:
        assert (ROOT / name).is_dir(), f"{name}/ is missing"
        assert not (ROOT / name / "__init__.py").exists(), f"{name}/__init__.py must not exist"
    assert not (ROOT / "tokenizers.py").exists()


def test_hf_tokenizers_is_not_shadowed():
    spec = importlib.util.find_spec("tokenizers")
    assert spec is not None and spec.origin is not None
    assert "site-packages" in spec.origin, f"`tokenizers` resolves to {spec.origin}"
    import tokenizers  # noqa: F401  (Hugging Face's, which transformers imports)
    assert hasattr(tokenizers, "Tokenizer")


def test_only_unimodal_is_packaged():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["unimodal*"]


def test_scripts_expose_main():
    for name in SCRIPT_DIRS:
        for script in (ROOT / name).glob("*.py"):
            text = script.read_text()
            assert "def main(argv=None)" in text, f"{script} needs main(argv=None)"
