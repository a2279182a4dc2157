"""Which cell starts when: up to `parallel_cells` cell workers (cell_worker.py, one child process
each) at once, in run order (cell.run_order: smallest budget first), within a time limit.

    deadline_minutes   (from the driver's start, prepare included) a cell starts only while the
                       time left is at least its estimate; a running cell is left to finish
    kill_at_minutes    the cells still running then are stopped (no result.json: they re-run)
    estimate           planned steps x the steady seconds per training step of the finished
                       cells of its objective and size (the slowest, measured as they ran: side
                       by side), plus their fixed seconds (start-up, compile, export, scoring);
                       before any: cell_minutes_estimate

A failed worker does not stop the others; `run_cells` returns what finished, what failed and
what remains, and the driver reports them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from unimodal.objective_study.cell import Cell
from unimodal.objective_study.cell_worker import RESULT_FILE
from unimodal.objective_study.child_process import log_tail, sigterm_as_exit, stop
from unimodal.objective_study.config import ObjectivesStudyConfig


def estimate_seconds(cell: Cell, steps: int, finished: list[dict], default_seconds: float) -> float:
    """Wall seconds of `cell` at `steps`: steps x the steady seconds per step of the finished cells
    of its objective and size, plus their fixed part (start-up, compile, export, scoring); the
    slowest of them for each. Before any: `default_seconds`."""
    same = [r for r in finished
            if r["objective"] == cell.objective and r["size"]["name"] == cell.size.name]
    if not same:
        return default_seconds

    def per_step(r: dict) -> float:
        return r.get("seconds_per_step", r.get("train_seconds", r["seconds"]) / r["steps"])

    fixed = max(r.get("train_seconds", r["seconds"]) - r["steps"] * per_step(r)
                + r.get("score_seconds", 0.0) for r in same)
    return steps * max(per_step(r) for r in same) + fixed


@dataclass
class Outcome:
    finished: list[dict] = field(default_factory=list)   # results of the cells run now, in finish order
    failed: list[tuple[Cell, str]] = field(default_factory=list)   # (cell, worker.log tail)
    remaining: list[Cell] = field(default_factory=list)  # not started (deadline) or stopped


def run_cells(cfg: ObjectivesStudyConfig, queue: list[Cell], steps: dict[str, int],
              launch: Callable, folders: dict[str, Path], earlier: list[dict], start: float,
              log=print, describe: Callable = lambda r: "", poll_seconds: float = 1.0,
              clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Run `queue` (in order) through `launch(cell) -> Popen`; `start` is the driver's start on
    `clock`; `earlier` are results of cells finished before (for the estimates)."""
    deadline, kill_at = 60 * cfg.deadline_minutes, 60 * cfg.kill_at_minutes
    pending, running, out = list(queue), {}, Outcome()

    def may_start(cell: Cell) -> bool:
        elapsed = clock() - start
        if kill_at and elapsed >= kill_at:
            return False
        return not deadline or deadline - elapsed >= estimate_seconds(
            cell, steps[cell.name], earlier + out.finished, 60 * cfg.cell_minutes_estimate)

    with sigterm_as_exit():
        try:
            while True:
                for cell in list(pending):
                    if len(running) >= cfg.parallel_cells:
                        break
                    if may_start(cell):
                        pending.remove(cell)
                        running[cell.name] = (cell, launch(cell))
                        log(f"started {cell.name} ({steps[cell.name]} steps; {len(running)} running, "
                            f"{len(pending)} waiting; {(clock() - start) / 60:.1f} min)")
                if not running:
                    break
                time.sleep(poll_seconds)
                for name, (cell, proc) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[name]
                    path = folders[name] / RESULT_FILE
                    if proc.returncode == 0 and path.is_file():
                        result = json.loads(path.read_text())
                        out.finished.append(result)
                        log(f"[{len(earlier) + len(out.finished)} done] {name}: {describe(result)}")
                    else:
                        tail = log_tail(folders[name] / "worker.log")
                        out.failed.append((cell, tail))
                        log(f"{name} FAILED (exit code {proc.returncode}); see "
                            f"{folders[name] / 'worker.log'}")
                if kill_at and running and clock() - start >= kill_at:
                    for name, (cell, proc) in running.items():
                        stop(proc)
                        out.remaining.append(cell)
                        log(f"stopped {name} at kill_at_minutes={cfg.kill_at_minutes} (it re-runs next time)")
                    running.clear()
        finally:
            for cell, proc in running.values():   # an exception or SIGTERM: leave no worker behind
                stop(proc)
    out.remaining = pending + out.remaining
    return out

