"""The study's child processes (unimodal/objective_study/child_process.py): a clean environment,
output to a log file in a session of its own, `stop` ending the whole session (SIGKILL after the
grace time for a child that ignores SIGTERM), and SIGTERM turned into SystemExit."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from unimodal.objective_study.child_process import (child_env, log_tail, sigterm_as_exit,
                                                    start_logged, stop)


def test_child_env_drops_rendezvous_and_puts_the_tree_first(monkeypatch, tmp_path):
    for key in ("RANK", "MASTER_PORT"):
        monkeypatch.setenv(key, "7")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = child_env(tmp_path, threads=3)
    assert "RANK" not in env and "MASTER_PORT" not in env
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path), "/elsewhere"])
    assert env["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")                   # already set: kept
    monkeypatch.delenv("PYTHONPATH")
    env = child_env(tmp_path, threads=3)
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONPATH"] == str(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert "OMP_NUM_THREADS" not in child_env(tmp_path)          # 0: torch's default


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as ended)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_start_logged_writes_the_log_and_stop_ends_the_whole_session(tmp_path):
    log = tmp_path / "deep" / "worker.log"
    done = start_logged(["sh", "-c", "echo out; echo err >&2"], log, {})
    assert done.wait(10) == 0 and log.read_text().splitlines() == ["out", "err"]
    pidfile = tmp_path / "grandchild"
    proc = start_logged(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], tmp_path / "b.log", {})
    assert os.getpgid(proc.pid) == proc.pid                      # a session of its own
    while not pidfile.is_file() or not pidfile.read_text().strip():
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())
    stop(proc, grace_seconds=5)
    assert proc.returncode == -signal.SIGTERM
    for _ in range(200):                                         # reparented: reaped by init
        if not _alive(grandchild):
            break
        time.sleep(0.01)
    assert not _alive(grandchild)
    stop(proc)                                                   # already gone: no error


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    proc = start_logged(["sh", "-c", f"trap '' TERM; touch {ready}; while true; do sleep 0.05; done"],
                        tmp_path / "c.log", {})
    while not ready.exists():
        time.sleep(0.01)
    stop(proc, grace_seconds=0.3)
    assert proc.returncode == -signal.SIGKILL


def test_log_tail(tmp_path):
    assert log_tail(tmp_path / "missing.log") == ""
    (tmp_path / "a.log").write_bytes(b"x" * 10 + b"\xff tail")
    assert log_tail(tmp_path / "a.log", chars=6) == "\ufffd tail"


def test_sigterm_becomes_system_exit_inside_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with sigterm_as_exit():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                                        # the handler raises first
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before            # restored
    seen = []

    def in_thread():                                             # signals belong to the main thread
        with sigterm_as_exit():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert seen == [before]


SCRIPT = """import os, sys
print("args", sys.argv[1:], "var", os.environ.get("PROBE_VAR"))
print("an error line", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""
# A fresh process that has run no torch op: the one state in which run_logged may fork.
CALLER = """import json, sys
from pathlib import Path
from unimodal.objective_study.child_process import run_logged
script, log, fork = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "fork"
print(json.dumps(run_logged([script, "3", "x"], log, {"PROBE_VAR": "seen", "PATH": ""}, fork=fork)))
"""


def test_run_logged_forked_or_fresh_gives_the_same_log_and_exit_code(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    results = {}
    for how in ("fresh", "fork"):
        done = subprocess.run([sys.executable, "-c", CALLER, str(script), str(tmp_path / how), how],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        # stdout and stderr interleave as buffering has it: compare the lines, not their order
        lines = sorted((tmp_path / how).read_text().splitlines())
        results[how] = (int(done.stdout.split()[-1]), lines)
    assert results["fork"] == results["fresh"]
    code, log = results["fork"]
    assert code == 3 and log == ["an error line", "args ['3', 'x'] var seen"]
