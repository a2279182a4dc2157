"""One command-line style: every script answers --help listing each key of its config with its
type and default, and refuses an unknown key naming it and the script."""

import re

import pytest

from help_fixtures import SCRIPTS
from process_fixtures import run_script as run
from unified_fixtures import ROOT, load_script
from unimodal.cli import config_keys, overrides_of, parse_config
from unimodal.config import ConfigError
from unimodal.model.sampling import ImageSamplingConfig

# Scripts on `[--config FILE] [key=value ...]` (unimodal.cli.parse_config).
CONFIG_SCRIPTS = sorted(s for s in SCRIPTS if "parse_config" in (ROOT / s).read_text())
SAMPLING_SCRIPTS = ["eval/accuracy_curve.py", "eval/clip_score.py", "eval/fid.py",
                    "eval/generator_diagnostics.py", "eval/modality_score.py", "eval/sample.py",
                    "eval/shapes_score.py"]


@pytest.fixture(scope="module")
def helps(script_helps):
    return script_helps


def test_every_script_is_on_parse_config_and_none_on_argparse():
    assert len(SCRIPTS) >= 20 and CONFIG_SCRIPTS == SCRIPTS
    on_argparse = [s for s in SCRIPTS if "argparse" in (ROOT / s).read_text()]
    assert not on_argparse


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_refuses_an_unknown_key_naming_it_and_the_script(script):
    with pytest.raises(ConfigError, match=rf"^{re.escape(script)}: .*'no_such_key'.*--help"):
        load_script(script).main(["no_such_key=1"])
    with pytest.raises(ConfigError, match=rf"^{re.escape(script)}: unknown option '--no-such-flag'"):
        load_script(script).main(["--no-such-flag", "1"])


def test_every_script_answers_help(helps):
    failed = {s: done.stderr[-300:] for s, done in helps.items() if done.returncode != 0}
    assert not failed


def test_config_scripts_list_every_key_with_type_and_default(helps):
    assert set(SAMPLING_SCRIPTS) <= set(CONFIG_SCRIPTS)
    for script in CONFIG_SCRIPTS:
        text = helps[script].stdout
        assert f"usage: python {script} [--config FILE] [key=value ...]" in text, script
        rows = text.split("\nkeys of ", 1)[1].splitlines()[1:]
        keys = [row.split()[0] for row in rows if row.startswith("  ") and len(row.split()) >= 3]
        assert keys and len(keys) == len(set(keys)), script
    for script in SAMPLING_SCRIPTS:
        line = re.search(r"^  sampling\.cfg_scale +float +(\S+)", helps[script].stdout, re.M)
        assert line and float(line.group(1)) == ImageSamplingConfig().cfg_scale, script


def test_an_unknown_key_or_flag_is_one_error_line_naming_it_and_the_script():
    done = run("eval/shapes_score.py", "sampling.cfg_scael=2")
    first = done.stderr.splitlines()[0]
    assert done.returncode == 2 and first.startswith("error: eval/shapes_score.py: ")
    assert "cfg_scael" in first and "--help" in first
    done = run("eval/sample.py", "--cfg-scale", "2")
    assert done.returncode == 2 and "unknown option '--cfg-scale'" in done.stderr.splitlines()[0]


def test_help_rows_and_child_overrides_come_from_the_dataclass():
    rows = {key: (kind, default) for key, kind, default, _ in config_keys(ImageSamplingConfig)}
    assert rows["cfg_scale"] == ("float", "4.0") and rows["cfg_schedule"] == ("str", "linear")
    cfg = ImageSamplingConfig(cfg_scale=2.0, cfg_schedule="constant", seed=3)
    words = overrides_of(cfg, "sampling.")
    assert "sampling.cfg_schedule=\"constant\"" in words

    from dataclasses import dataclass, field

    @dataclass
    class Script:
        sampling: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)

    assert parse_config(Script, words, None, "eval/x.py").sampling == cfg
    with pytest.raises(ConfigError, match="eval/x.py: .*'nope'"):
        parse_config(Script, ["nope=1"], None, "eval/x.py")
    with pytest.raises(ConfigError, match="not key=value"):
        parse_config(Script, ["sampling.seed"], None, "eval/x.py")
