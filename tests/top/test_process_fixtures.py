"""The warm children of tests/process_fixtures.py behave as a fresh `python` does: the same exit
code, stdout and stderr, the given environment and folder, and a timeout that kills. So does
their stand-in on a CUDA machine, a fresh interpreter."""

import subprocess
import sys

import pytest

import process_fixtures
from process_fixtures import clean_env, run_warm

CHILD = """
import os, sys
print("argv", sys.argv[1:], "cwd", os.path.basename(os.getcwd()), "var", os.environ.get("PROBE_VAR"))
print("to stderr", file=sys.stderr)
how = sys.argv[1]
if how == "code":
    sys.exit(3)
if how == "message":
    sys.exit("stopped: a message")
if how == "raise":
    raise ValueError("not caught")
"""


@pytest.mark.parametrize("cuda_machine", [False, True], ids=["forked", "fresh_on_cuda"])
@pytest.mark.parametrize("how", ["ok", "code", "message", "raise"])
def test_a_warm_child_ends_like_a_fresh_interpreter(tmp_path, monkeypatch, how, cuda_machine):
    monkeypatch.setattr(process_fixtures, "_cuda_machine", lambda: cuda_machine)
    env = {**clean_env(), "PROBE_VAR": "seen"}
    fresh = subprocess.run([sys.executable, "-c", CHILD, how, "x"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    warm = run_warm(["-c", CHILD, how, "x"], env, timeout=60, cwd=tmp_path)
    assert (warm.returncode, warm.stdout) == (fresh.returncode, fresh.stdout)
    assert warm.returncode == {"ok": 0, "code": 3, "message": 1, "raise": 1}[how]
    assert f"argv ['{how}', 'x'] cwd {tmp_path.name} var seen" in warm.stdout
    if how == "raise":  # the traceback's frames differ; its last line does not
        assert "Traceback" in warm.stderr
        assert warm.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]
    else:
        assert warm.stderr == fresh.stderr


@pytest.mark.parametrize("cuda_machine", [False, True], ids=["forked", "fresh_on_cuda"])
def test_a_warm_child_past_its_timeout_is_killed_with_its_output_in_the_failure(monkeypatch,
                                                                                cuda_machine):
    monkeypatch.setattr(process_fixtures, "_cuda_machine", lambda: cuda_machine)
    run_warm(["-c", "pass"], clean_env(), timeout=120)  # the forkserver is up: no import counts
    code = "import time; print('started', flush=True); time.sleep(60)"
    with pytest.raises(AssertionError, match=r"(?s)still running after 1 s.*started"):
        run_warm(["-c", code], clean_env(), timeout=1)
