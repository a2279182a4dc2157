"""The study's loop: prepare once, plan every cell's steps (so a budget below one step fails before
any training), run the cells not finished yet (schedule.py: up to `parallel_cells` worker
processes at once, smallest budget first, within `deadline_minutes`), and write the report from
every finished cell.

A cell is finished when <out>/cells/<cell>/result.json exists; its worker writes it atomically (a
temporary file renamed), so an interrupted or stopped cell leaves no result and is run again from
scratch, and a rerun of the same command skips the finished ones (on a GPU: chunks of 10-minute
calls, with only the result.json files carried from one call to the next).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from unimodal.config import save_config
from unimodal.metrics.shapes_features import METRIC_NAME
from unimodal.objective_study.cell import (Cell, cell_pretrain_config, flops_per_step, grid_cells,
                                           plan_steps, run_order)
from unimodal.objective_study.cell_worker import (PLAN_FILE, PRETRAIN_FILE, RESULT_FILE,
                                                  write_json_atomic)
from unimodal.objective_study.child_process import child_env, start_logged
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.objective_study.prepare import Prepared, prepare
from unimodal.objective_study.report import whole_prompt_accuracy, write_report
from unimodal.objective_study.schedule import run_cells

CONFIG_FILE = "objectives_config.yaml"


def run_study(cfg: ObjectivesStudyConfig, scripts_root: Path, log=print) -> dict:
    start = time.monotonic()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / CONFIG_FILE)
    cells = grid_cells(cfg)
    cell_dir = {c.name: out / "cells" / c.name for c in cells}
    done = {c.name: json.loads((cell_dir[c.name] / RESULT_FILE).read_text()) for c in cells
            if (cell_dir[c.name] / RESULT_FILE).is_file()}
    todo = [c for c in run_order(cfg, cells) if c.name not in done]
    log(f"objectives study: {len(cells)} cells ({len(cfg.objectives)} objectives x "
        f"{len(cfg.sizes)} sizes x {len(cfg.budgets)} budgets), {len(done)} finished, "
        f"{len(todo)} to run, {cfg.parallel_cells} at a time -> {out}")
    for name in done:
        log(f"{name}: finished earlier, skipped")
    trained, failed, remaining = [], [], []
    if todo:
        prepared = prepare(cfg, scripts_root, log)
        plans = plan_cells(cfg, todo, prepared, cell_dir, list(done.values()))
        threads = max(1, (os.cpu_count() or 1) // cfg.parallel_cells) if cfg.parallel_cells > 1 else 0

        def launch(cell: Cell):
            folder = cell_dir[cell.name].resolve()
            per_step, steps = plans[cell.name]
            folder.mkdir(parents=True, exist_ok=True)
            save_config(cell_pretrain_config(cfg, cell, prepared, folder / "train", steps),
                        folder / PRETRAIN_FILE)
            write_json_atomic(folder / PLAN_FILE, {**cell.record(), "cell": cell.name,
                                                   "steps": steps, "flops_per_step": per_step,
                                                   "parallel_cells": cfg.parallel_cells})
            return start_logged([sys.executable, "-m", "unimodal.objective_study.cell_worker",
                                 str(folder), str((out / CONFIG_FILE).resolve()),
                                 str(scripts_root.resolve())],
                                folder / "worker.log", child_env(scripts_root, threads))

        outcome = run_cells(cfg, todo, {n: s for n, (_, s) in plans.items()}, launch, cell_dir,
                            list(done.values()), start, log, describe=_describe)
        done.update({r["cell"]: r for r in outcome.finished})
        trained = [r["cell"] for r in outcome.finished]
        failed, remaining = outcome.failed, outcome.remaining
    if remaining:
        count = "1 cell remains" if len(remaining) == 1 else f"{len(remaining)} cells remain"
        log(f"{count} (deadline_minutes={cfg.deadline_minutes}, "
            f"kill_at_minutes={cfg.kill_at_minutes}); run the same command again for: "
            + ", ".join(c.name for c in remaining))
    results = [done[c.name] for c in cells if c.name in done]
    table = ""
    if results:
        table = write_report(results, out, cfg.score.timing_batch_sizes, report_notes(cfg, results))
        log(f"wrote results.md and the plots to {out} ({len(results)} of {len(cells)} cells)")
        log(table)
    if failed:
        raise RuntimeError(f"{len(failed)} cells failed: " + "\n\n".join(
            f"{cell.name} ({cell_dir[cell.name] / 'worker.log'}):\n{tail}" for cell, tail in failed))
    return {"results": results, "trained": trained, "remaining": [c.name for c in remaining],
            "table": table}


def plan_cells(cfg: ObjectivesStudyConfig, todo: list[Cell], prepared: Prepared,
               cell_dir: dict[str, Path], done: list[dict]) -> dict[str, tuple[float, int]]:
    """Every cell's (FLOPs of one step, steps) before any training, so a bad budget fails first;
    one step's FLOPs measured once per objective and size, or taken from a finished cell of the
    same objective and size (the same count: the prepared data are deterministic)."""
    per_step = {(r["objective"], r["size"]["name"]): r["flops_per_step"] for r in done}
    plans = {}
    for cell in todo:
        key = (cell.objective, cell.size.name)
        if key not in per_step:
            probe = cell_pretrain_config(cfg, cell, prepared, cell_dir[cell.name] / "train")
            per_step[key] = flops_per_step(probe, cfg.flops_batches)
        plans[cell.name] = (per_step[key], plan_steps(cell, per_step[key]))
    return plans


def _describe(result: dict) -> str:
    return (f"{result['steps']} steps, {result['train_flops']:.3g} training FLOPs, whole prompt "
            f"{_pct(whole_prompt_accuracy(result))}, {METRIC_NAME} "
            f"{result['scores']['fd_shapes']:.4g}, {result['scores']['inference_flops']:.3g} "
            f"inference FLOPs/img ({result['seconds']:.0f} s)")


def report_notes(cfg: ObjectivesStudyConfig, results: list[dict]) -> list[str]:
    """What each column of results.md measures, under the table."""
    notes = [f"{METRIC_NAME}: Fréchet distance in the feature layer of the shapes classifier "
             f"{cfg.score.classifier} (sha256 {results[0]['scores']['classifier_sha256'][:12]}), "
             f"against {cfg.score.reference_images} held-out renders; not Inception FID",
             "accuracy: the shapes checker on held-out caption prompts (whole prompt and per "
             "attribute) and on class prompts; train FLOPs: the trainer's count (flops.py); "
             "inference FLOPs per image: inference_cost.py (with CFG: two rows)",
             f"ms/img: measured on {results[0]['scores']['device']}, codes sampled and decoded, "
             "one untimed warm-up batch"]
    shared = max(r.get("parallel_cells", 1) for r in results)
    if shared > 1:
        notes.append(f"ms/img was measured while up to {shared} cells shared the device: an upper "
                     "bound, noisy from cell to cell; inference FLOPs/img is the exact comparison")
    shas = sorted({r["scores"]["classifier_sha256"] for r in results})
    if len(shas) > 1:
        notes.append(f"WARNING: cells were scored with {len(shas)} different classifier files "
                     f"({', '.join(x[:12] for x in shas)}): their FD values do not compare")
    if any("inception_fid" in r["scores"] for r in results):
        weights = cfg.score.inception_weights or "weights given to an earlier run"
        notes.append(f"Inception FID: torch-fidelity's Inception ({weights}), "
                     f"{cfg.score.inception_feature_layer}-d features (2048 = FID), against the same "
                     f"{cfg.score.reference_images} held-out renders at the generated size; "
                     "'-' = a cell scored without Inception weights")
    return notes


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
