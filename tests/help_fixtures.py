"""Every entry script's `python <script> --help`, in one interpreter start instead of one per script
(each start imports torch: seconds on 2 cores). Used by tests/top/test_cli.py and
tests/project/test_readme.py.

Run as a program (`python tests/help_fixtures.py SCRIPT...`), this file imports torch and the
package once, then forks one child per script; the child runs the script as `__main__` with
`sys.argv = [script, "--help"]` and the script's folder first on sys.path, exactly as `python
<script>` would, its stdout and stderr going to files. The parent prints the results as JSON.
A script named like a stdlib module (mixing/inspect.py) still gets a fresh interpreter of its own:
there the check is that the script keeps its folder from shadowing the stdlib module, which an
interpreter that already imported that module could not see."""

import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fresh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


SCRIPTS = sorted(str(p.relative_to(ROOT)) for folder in ("train", "eval", "tokenizers", "mixing")
                 for p in (ROOT / folder).glob("*.py"))


@lru_cache(maxsize=None)
def script_helps(shared_dir: Path | None = None) -> dict[str, subprocess.CompletedProcess]:
    """{script: its `python <script> --help` run} for every entry script (SCRIPTS, relative to the
    repo root); computed once per test process, and once per test session when `shared_dir` is
    a folder all pytest-xdist workers see (the `script_helps` fixture of tests/conftest.py): the
    first worker computes it under a file lock, the other reads its JSON."""
    if shared_dir is None:
        return _compute_helps()
    from filelock import FileLock  # a torch dependency

    cache = shared_dir / "script_helps.json"
    with FileLock(str(cache) + ".lock"):
        if not cache.is_file():
            cache.write_text(json.dumps({s: [d.returncode, d.stdout, d.stderr]
                                         for s, d in _compute_helps().items()}))
        return {s: subprocess.CompletedProcess([sys.executable, s, "--help"], *r)
                for s, r in json.loads(cache.read_text()).items()}


def _compute_helps() -> dict[str, subprocess.CompletedProcess]:
    scripts = SCRIPTS
    fresh = [s for s in scripts if Path(s).stem in sys.stdlib_module_names]
    forked = [s for s in scripts if s not in fresh]
    done = subprocess.run([sys.executable, __file__, *forked], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {s: subprocess.CompletedProcess([sys.executable, s, "--help"], *r)
               for s, r in json.loads(done.stdout.splitlines()[-1]).items()}
    return {**results, **{s: _fresh(s) for s in fresh}}


def _run_forked(script: str) -> tuple[int, str, str]:
    from unimodal.objective_study.child_process import finish_forked_child

    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "out"), Path(tmp, "err")
        pid = os.fork()
        if pid == 0:  # the child: `python <script> --help`
            finish_forked_child([script, "--help"], out, err)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out.read_text(), err.read_text()


def _preload(scripts: list[str]) -> None:
    """Import once, here, what the scripts import at their top (torch, the package...): every
    child inherits it. An import that fails here (a script's own sibling) is left to the child."""
    import ast
    import importlib

    for script in scripts:
        for node in ast.parse((ROOT / script).read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.path.pop(0)  # tests/: each child puts its script's folder there instead
    _preload(sys.argv[1:])
    print(json.dumps({script: _run_forked(script) for script in sys.argv[1:]}))
