"""The study's loop: prepare once, plan every cell's steps (so a budget below one step fails before
any training), then train and score the cells not finished yet, and write the report.

A cell is finished when <out>/cells/<cell>/result.json exists; it is written atomically (a
temporary file renamed), so an interrupted cell leaves no result and is run again from scratch,
and a rerun of the same command skips the finished ones (on a GPU: chunks of 10-minute calls).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from unimodal.config import save_config
from unimodal.metrics.shapes_features import METRIC_NAME
from unimodal.objective_study.cell import (Cell, cell_pretrain_config, flops_per_step, grid_cells,
                                           plan_steps, train_cell)
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.objective_study.prepare import prepare
from unimodal.objective_study.report import whole_prompt_accuracy, write_report
from unimodal.objective_study.scoring import Scorer

RESULT_FILE = "result.json"


def write_json_atomic(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def run_study(cfg: ObjectivesStudyConfig, scripts_root: Path, log=print) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "objectives_config.yaml")
    cells = grid_cells(cfg)
    cell_dir = {c.name: out / "cells" / c.name for c in cells}
    todo = [c for c in cells if not (cell_dir[c.name] / RESULT_FILE).is_file()]
    log(f"objectives study: {len(cells)} cells ({len(cfg.objectives)} objectives x "
        f"{len(cfg.sizes)} sizes x {len(cfg.budgets)} budgets), {len(cells) - len(todo)} finished, "
        f"{len(todo)} to run -> {out}")
    plans: dict[str, tuple] = {}
    if todo:
        prepared = prepare(cfg, scripts_root, log)
        per_step: dict[tuple[str, str], float] = {}
        for cell in todo:     # every plan first: a bad budget fails before any training
            key = (cell.objective, cell.size.name)
            if key not in per_step:
                probe = cell_pretrain_config(cfg, cell, prepared, cell_dir[cell.name] / "train")
                per_step[key] = flops_per_step(probe, cfg.flops_batches)
            plans[cell.name] = (prepared, per_step[key], plan_steps(cell, per_step[key]))
    scorer = Scorer(cfg.score, cfg.sampling) if todo else None
    results, trained = [], []
    for i, cell in enumerate(cells, 1):
        path = cell_dir[cell.name] / RESULT_FILE
        if path.is_file():
            result = json.loads(path.read_text())
            log(f"[{i}/{len(cells)}] {cell.name}: finished earlier, skipped")
        else:
            result = run_cell(cfg, cell, cell_dir[cell.name], *plans[cell.name], scorer,
                              scripts_root)
            write_json_atomic(path, result)
            trained.append(cell.name)
            log(f"[{i}/{len(cells)}] {cell.name}: {result['steps']} steps, "
                f"{result['train_flops']:.3g} training FLOPs, whole prompt "
                f"{_pct(whole_prompt_accuracy(result))}, {METRIC_NAME} "
                f"{result['scores']['fd_shapes']:.4g}, {result['scores']['inference_flops']:.3g} "
                f"inference FLOPs/img ({result['seconds']:.0f} s)")
        results.append(result)
    table = write_report(results, out, cfg.score.timing_batch_sizes, report_notes(cfg, results))
    log(f"wrote results.md and the plots to {out}")
    log(table)
    return {"results": results, "trained": trained, "table": table}


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
    if any("inception_fid" in r["scores"] for r in results):
        weights = cfg.score.inception_weights or "weights given to an earlier run"
        notes.append(f"Inception FID: torch-fidelity's Inception ({weights}), "
                     f"{cfg.score.inception_feature_layer}-d features (2048 = FID), against the same "
                     f"{cfg.score.reference_images} held-out renders at the generated size; "
                     "'-' = a cell scored without Inception weights")
    return notes


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def run_cell(cfg: ObjectivesStudyConfig, cell: Cell, folder: Path, prepared, per_step: float,
             steps: int, scorer: Scorer, scripts_root: Path) -> dict:
    start = time.perf_counter()
    pcfg = cell_pretrain_config(cfg, cell, prepared, folder / "train", steps)
    last = train_cell(pcfg, folder / "pretrain.yaml", scripts_root)
    scores = scorer.score(str(folder / "train" / "export"))
    return {**cell.record(), "cell": cell.name, "steps": steps, "flops_per_step": per_step,
            "train_flops": last["train_flops"], "final_loss": last["loss"],
            "final_image_loss": last["image_loss"], "scores": scores,
            "seconds": time.perf_counter() - start}
