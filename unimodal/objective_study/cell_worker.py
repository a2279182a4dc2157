"""One cell in its own process: train it (train/pretrain.py, a child forked from this process),
score its export, write <cell>/result.json atomically. The driver (schedule.py) writes the cell's
pretrain.yaml and plan.json, then starts

    python -m unimodal.objective_study.cell_worker <cell folder> <study config> <scripts root>

with output to <cell>/worker.log (the trainer's: <cell>/train.log). Cells are independent: each
worker loads the scorer itself (held-out scenes, classifier, reference statistics: the same files,
so the same reference), and a worker stopped before the end leaves no result.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from unimodal.config import load_config
from unimodal.objective_study.cell import train_cell
from unimodal.objective_study.config import ObjectivesStudyConfig
from unimodal.objective_study.scoring import Scorer
from unimodal.pretraining.config import PretrainConfig
# Imported here so the training child (forked by train_cell) starts with it loaded.
from unimodal.pretraining.trainer import Pretrainer  # noqa: F401

RESULT_FILE = "result.json"
PLAN_FILE = "plan.json"          # the cell record, its steps and the FLOPs of one step
PRETRAIN_FILE = "pretrain.yaml"


def write_json_atomic(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def steady_seconds_per_step(log: list[dict], fallback: float) -> float:
    """Seconds per step between the trainer's first and last log records (compile and start-up
    before the first are left out: the schedule counts them once per cell, not per step)."""
    timed = [r for r in log if "elapsed_s" in r and "step" in r]
    if len(timed) < 2 or timed[-1]["step"] <= timed[0]["step"]:
        return fallback
    return (timed[-1]["elapsed_s"] - timed[0]["elapsed_s"]) / (timed[-1]["step"] - timed[0]["step"])


def run_cell(folder: Path, cfg: ObjectivesStudyConfig, scripts_root: Path) -> dict:
    started, start = time.time(), time.perf_counter()
    plan = json.loads((folder / PLAN_FILE).read_text())
    pcfg = load_config(PretrainConfig, folder / PRETRAIN_FILE, validate=False)
    # No torch op has run in this process yet, so the trainer can be forked from it (the scoring
    # below starts OpenMP's threads, after which a forked child would hang).
    last = train_cell(pcfg, folder / PRETRAIN_FILE, scripts_root, fork=True)
    trained = time.perf_counter()
    scores = Scorer(cfg.score, cfg.sampling).score(str(folder / "train" / "export"))
    end = time.perf_counter()
    log = [json.loads(line) for line in (folder / "train" / "log.jsonl").read_text().splitlines()]
    result = {**plan, "train_flops": last["train_flops"], "final_loss": last["loss"],
              "final_image_loss": last["image_loss"], "scores": scores,
              "seconds": end - start, "train_seconds": trained - start,
              "seconds_per_step": steady_seconds_per_step(log, (trained - start) / plan["steps"]),
              "score_seconds": end - trained, "started": started, "finished": time.time()}
    write_json_atomic(folder / RESULT_FILE, result)
    return result


def main(argv=None) -> dict:
    folder, config, scripts_root = (Path(a) for a in (sys.argv[1:] if argv is None else argv))
    return run_cell(folder, load_config(ObjectivesStudyConfig, config, validate=False), scripts_root)


if __name__ == "__main__":
    main()
