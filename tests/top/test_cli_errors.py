"""Scripts report the errors they explain in one line (exit code 2), not a traceback."""

import subprocess
import sys

import pytest

from process_fixtures import clean_env, run_script as run
from unimodal.cli import run_main
from unimodal.data.image_sources import DataError


def test_a_config_typo_is_one_line_with_exit_code_2():
    done = run("tokenizers/train_rdpm.py", "--config", "configs/rdpm_tiny.yaml", "model.widht=3")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "widht" in done.stderr.splitlines()[0]


def test_bad_cli_input_is_one_line_and_the_traceback_is_on_request(tmp_path):
    args = ("eval/sample.py", f"checkpoint={tmp_path / 'nope'}", "prompts=[a red circle]",
            f"out={tmp_path / 'out'}")
    done = run(*args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "checkpoint=" in done.stderr.splitlines()[0]
    assert "Traceback" in run(*args, env={"UNIMODAL_TRACEBACK": "1"}).stderr


def test_run_main_explains_user_and_data_errors_and_lets_bugs_through(capsys, monkeypatch):
    monkeypatch.delenv("UNIMODAL_TRACEBACK", raising=False)

    def fail(err):
        def main():
            raise err
        return main

    for err in (DataError("source x: 30 of 40 samples unreadable"), FileNotFoundError("f.yaml")):
        with pytest.raises(SystemExit) as stop:
            run_main(fail(err))
        assert stop.value.code == 2
        assert capsys.readouterr().err.startswith(f"error: {err}\n")
    with pytest.raises(KeyError):   # a bug keeps its traceback
        run_main(fail(KeyError("bug")))


def test_the_cli_module_does_not_import_torch():
    # Scripts that only read JSON (eval/quickstart_summary.py) start in 0.1 s, not 2. A fresh
    # interpreter: the warm children of run_script have torch imported already.
    done = subprocess.run([sys.executable, "-c",
                           "import sys, unimodal.cli; print('torch' in sys.modules)"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
