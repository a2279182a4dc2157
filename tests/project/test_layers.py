"""The package's floors (pyproject's [tool.importlinter] contracts): no module imports upward.

import-linter builds the import graph of `unimodal` statically and checks the layers contracts;
the second test plants an upward import in a copy of the package and expects the contract to fail,
so a contract that checks nothing cannot pass silently."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("importlinter")


def lint(root: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_no_module_imports_from_a_higher_floor():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "unimodal", tmp_path / "unimodal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    sampling = tmp_path / "unimodal/model/sampling.py"
    sampling.write_text(sampling.read_text() + "\nfrom unimodal.data import sequences  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0 and "unimodal.model.sampling -> unimodal.data.sequences" in done.stdout
