"""Scripts report the errors they explain in one line (exit code 2), not a traceback."""

from process_fixtures import run_script as run


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
