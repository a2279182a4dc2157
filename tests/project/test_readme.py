"""README is checked against the tree: every file it cites exists, and every script its code
blocks run answers --help (shell scripts at least parse)."""

import re
import subprocess

import pytest

from help_fixtures import ROOT

README = (ROOT / "README.md").read_text()
CITED = re.compile(r"(?:configs|eval|train|tokenizers|mixing|docs|unimodal|tests)/[A-Za-z0-9_./-]+"
                   r"\.(?:py|yaml|sh|png|md)")


def code_blocks() -> str:
    return "\n".join(re.findall(r"```(?:bash)?\n(.*?)```", README, flags=re.S))


def test_every_cited_file_exists():
    missing = sorted({path for path in CITED.findall(README) if not (ROOT / path).exists()})
    assert not missing, f"README cites files that do not exist: {missing}"


@pytest.mark.slow
def test_every_command_in_the_code_blocks_answers_help(script_helps):
    blocks = code_blocks()
    scripts = sorted(set(re.findall(r"(?:tokenizers|mixing|train|eval)/\w+\.py", blocks)))
    shells = sorted(set(re.findall(r"(?:train|eval)/\w+\.sh", blocks)))
    assert "train/pretrain.py" in scripts and "eval/sample.py" in scripts and shells

    helps = script_helps  # every entry script's `--help`, shared with tests/top/test_cli.py
    missing = [s for s in scripts if s not in helps]
    assert not missing, f"README runs scripts that do not exist: {missing}"
    failed = [(s, helps[s].stderr[-500:]) for s in scripts if helps[s].returncode != 0]
    assert not failed, failed
    for shell in shells:
        assert subprocess.run(["bash", "-n", str(ROOT / shell)]).returncode == 0, shell
