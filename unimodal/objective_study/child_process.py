"""The study's child processes (tokenizer trainers, cell workers, train/pretrain.py): their
environment, their start with output to a log file, and their termination with everything they
started; a script run to its end in a fresh interpreter or in a forked child (`run_logged`,
`finish_forked_child`, `run_as_main`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

# Rendezvous variables of an in-process run (a test's) would make the child join a dead group.
_RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def child_env(scripts_root: Path, threads: int = 0) -> dict[str, str]:
    """This environment without rendezvous variables, `scripts_root` first on PYTHONPATH (the
    child imports the same tree as its parent), and `threads` CPU threads unless already set
    (0 = torch's default: all cores, fine for one child at a time)."""
    env = {k: v for k, v in os.environ.items() if k not in _RENDEZVOUS}
    env["PYTHONPATH"] = os.pathsep.join([str(scripts_root)] + ([env["PYTHONPATH"]]
                                                               if env.get("PYTHONPATH") else []))
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def start_logged(argv: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `argv` with stdout and stderr to `log_file`, in its own session, so `stop` ends it
    and its children (a `timeout` around the parent does not reach them: the parent stops them)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def stop(proc: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """SIGTERM to the process group of a `start_logged` child, SIGKILL after the grace time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace_seconds)
            return
        except subprocess.TimeoutExpired:
            continue


def run_as_main(argv: list[str]) -> int:
    """`python *argv` inside this process (a forked child's): a script path or `-c CODE`, then its
    arguments, run as `__main__` with the script's folder (for -c, the working folder) first on
    sys.path. Returns the exit code Python would give; an uncaught exception prints its
    traceback, as the interpreter would."""
    import runpy
    import traceback

    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path.insert(0, "")
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = list(argv)
            sys.path.insert(0, str(Path(argv[0]).resolve().parent))
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # sys.exit("message"): printed, exit code 1
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def finish_forked_child(argv: list[str], out: Path | str, err: Path | str | None = None,
                        env: dict[str, str] | None = None) -> NoReturn:
    """The body of a just-forked child: stdout to `out` and stderr to `err` (or `out` too), the
    environment `env` (if given), then `python *argv` by `run_as_main`, and the process ends
    with its exit code, never returning into the caller's code."""
    code = 1
    try:
        out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err_fd = out_fd if err is None else os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                                    0o644)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # new streams on the descriptors: the parent's sys.stdout may not write to fd 1 (pytest's
        # capture replaces it); line-buffered, so a killed child still leaves its output
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        code = run_as_main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_logged(argv: list[str], log_file: Path, env: dict[str, str], fork: bool = False) -> int:
    """`python *argv` (a script and its arguments) to its end, stdout and stderr to `log_file`;
    its exit code. A fresh interpreter, or with `fork` a child forked from this process that runs
    the script as `__main__` with `env`: it starts with this process's imports (torch, the
    package: seconds of a fresh interpreter's start, most of a tiny cell's training). `fork` is
    only for a caller that has run no torch op yet: a child forked after OpenMP's thread pool
    started hangs at its first parallel op. With CUDA initialized it falls back to a fresh
    interpreter (a forked child cannot use CUDA)."""
    import torch

    log_file.parent.mkdir(parents=True, exist_ok=True)
    if not fork or torch.cuda.is_initialized():
        with open(log_file, "w") as log:
            return subprocess.run([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode
    pid = os.fork()
    if pid == 0:
        finish_forked_child(argv, log_file, env=env)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def log_tail(log_file: Path, chars: int = 3000) -> str:
    return log_file.read_text(errors="replace")[-chars:] if log_file.is_file() else ""


@contextmanager
def sigterm_as_exit():
    """Within: SIGTERM (e.g. from `timeout`) raises SystemExit, so the caller's `finally` stops
    its `start_logged` children (in their own sessions, out of reach of a signal to its group)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
