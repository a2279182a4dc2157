"""The cell pool (schedule.py) with stand-in workers, shell commands of known length: the
estimates, a deadline that starts only the cells that fit, and kill_at_minutes."""

import json
import time

from unimodal.objective_study.cell import Cell
from unimodal.objective_study.child_process import start_logged
from unimodal.objective_study.config import ModelSize, ObjectivesStudyConfig
from unimodal.objective_study.schedule import estimate_seconds, run_cells

SMALL, BIG = ModelSize(name="s"), ModelSize(name="b", hidden_size=128)


def _result(cell: Cell, steps: int, train_seconds: float, score_seconds: float,
            per_step: float | None = None) -> dict:
    return {**cell.record(), "cell": cell.name, "steps": steps, "seconds": train_seconds + score_seconds,
            "train_seconds": train_seconds, "score_seconds": score_seconds,
            "seconds_per_step": train_seconds / steps if per_step is None else per_step}


def test_estimate_scales_the_seconds_per_step_of_finished_cells_of_its_objective_and_size():
    small = Cell("rdpm", SMALL, 1e6)
    # Steady 1.5 and 2 s/step; fixed parts 20 - 15 + 3 = 8 s and 12 - 8 + 5 = 9 s: the slowest counts.
    finished = [_result(Cell("rdpm", SMALL, 5e5), 10, 20.0, 3.0, per_step=1.5),
                _result(Cell("rdpm", SMALL, 2e5), 4, 12.0, 5.0, per_step=2.0),
                _result(Cell("masked", SMALL, 5e5), 10, 100.0, 9.0),   # another objective
                _result(Cell("rdpm", BIG, 5e5), 10, 100.0, 9.0)]       # another size
    assert estimate_seconds(small, 20, finished, 77.0) == 20 * 2.0 + 9.0
    assert estimate_seconds(Cell("next_token", SMALL, 1e6), 20, finished, 77.0) == 77.0


def _pool(tmp_path, cfg, seconds: dict[str, float]):
    """run_cells on cells whose worker sleeps `seconds[name]` and then writes its result."""
    cells = [Cell("rdpm", SMALL, 1.0), Cell("masked", SMALL, 1.0), Cell("rdpm", SMALL, 2.0)]
    folders = {c.name: tmp_path / c.name for c in cells}

    def launch(cell):
        result = json.dumps(_result(cell, 1, seconds[cell.name], 0.0))
        command = f"sleep {seconds[cell.name]} && echo '{result}' > {folders[cell.name] / 'result.json'}"
        return start_logged(["sh", "-c", command], folders[cell.name] / "worker.log", {})

    lines = []
    out = run_cells(cfg, cells, {c.name: 1 for c in cells}, launch, folders, [], time.monotonic(),
                    log=lines.append, poll_seconds=0.05)
    return cells, out, "\n".join(lines)


def test_a_deadline_starts_only_the_cells_whose_estimate_fits(tmp_path):
    # 3 s deadline, 2.4 s estimate before a cell of the same objective and size finished: the
    # first cell starts at once and takes 1 s; then 2 s are left, less than the masked cell's
    # 2.4 s estimate, but the second rdpm cell's estimate is the first one's 1 s: it starts.
    cfg = ObjectivesStudyConfig(parallel_cells=1, deadline_minutes=0.05, cell_minutes_estimate=0.04)
    cells, out, printed = _pool(tmp_path, cfg, {"rdpm__s__1": 1.0, "masked__s__1": 0.1,
                                                "rdpm__s__2": 0.1})
    assert [r["cell"] for r in out.finished] == ["rdpm__s__1", "rdpm__s__2"]
    assert out.remaining == [cells[1]] and not out.failed
    assert not (tmp_path / "masked__s__1").exists()


def test_kill_at_stops_running_cells_which_leave_no_result(tmp_path):
    cfg = ObjectivesStudyConfig(parallel_cells=2, kill_at_minutes=0.02)       # 1.2 s
    start = time.monotonic()
    cells, out, printed = _pool(tmp_path, cfg, {"rdpm__s__1": 0.1, "masked__s__1": 30,
                                                "rdpm__s__2": 30})
    assert time.monotonic() - start < 15
    assert [r["cell"] for r in out.finished] == ["rdpm__s__1"]
    assert sorted(c.name for c in out.remaining) == ["masked__s__1", "rdpm__s__2"]
    assert printed.count("stopped") == 2
    assert not (tmp_path / "masked__s__1" / "result.json").exists()
