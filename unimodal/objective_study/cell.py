"""One cell of the study: an objective x a model size x a training FLOPs budget.

Its training config is the study's pretraining base with the cell's objective, size, prepared
tokenizer and shards; its step count is budget / FLOPs of one step, where one step's FLOPs are
`pretraining.flops.step_flops` averaged over the first `flops_batches` packed batches of the
cell's own data stream (the count the trainer logs as `train_flops`). Training runs
train/pretrain.py in a child process (DeepSpeed keeps process-wide state that a second run in
one process trips over; `run_logged` forks it from a cell worker) on the cell's config, saved
as <cell>/pretrain.yaml, into <cell>/train, whose `export` the scoring loads; cell_worker.py
runs training and scoring of one cell.
"""

from __future__ import annotations

import copy
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from unimodal.config import ConfigError, load_config, save_config
from unimodal.data.data_config import SourceConfig
from unimodal.data.mixture import PackedBatchStream
from unimodal.model.export import build_unified
from unimodal.objective_study.child_process import child_env, log_tail, run_logged
from unimodal.objective_study.config import ModelSize, ObjectivesStudyConfig
from unimodal.objective_study.prepare import Prepared
from unimodal.pretraining.config import PretrainConfig
from unimodal.pretraining.flops import layer_parameter_count, step_flops


@dataclass
class Cell:
    objective: str
    size: ModelSize
    budget: float                         # training FLOPs

    @property
    def name(self) -> str:
        budget = f"{self.budget:.4g}".replace("+", "")
        return f"{self.objective}__{self.size.name}__{budget}"

    def record(self) -> dict:
        return {"objective": self.objective, "size": asdict(self.size), "budget": self.budget}


def grid_cells(cfg: ObjectivesStudyConfig) -> list[Cell]:
    """Objectives x sizes x budgets, budgets innermost: the order of the table."""
    return [Cell(o, s, b) for o in cfg.objectives for s in cfg.sizes for b in sorted(cfg.budgets)]


def run_order(cfg: ObjectivesStudyConfig, cells: list[Cell]) -> list[Cell]:
    """The order cells start in: smallest budget first, then smallest size (as listed), every
    objective of a size side by side, so a grid cut short still covers each objective."""
    size = {s.name: i for i, s in enumerate(cfg.sizes)}
    return sorted(cells, key=lambda c: (c.budget, size[c.size.name], cfg.objectives.index(c.objective)))


def cell_pretrain_config(cfg: ObjectivesStudyConfig, cell: Cell, prepared: Prepared,
                         out_dir: Path, steps: int = 1) -> PretrainConfig:
    tokenizer, shards = prepared.for_objective(cell.objective)
    words = shlex.split(cfg.pretrain_overrides) + cell.size.backbone_overrides() + [
        f"model.image_objective={cell.objective}",
        f"model.code_head={cfg.rdpm_code_head if cell.objective == 'rdpm' else 'shared'}",
        f"model.image_tokenizer={tokenizer}", f"model.vocab.text_tokenizer={prepared.text_tokenizer}",
        "model.vocab.num_classes=28", f"train.out_dir={out_dir}", f"train.steps={steps}",
        "train.overwrite=true", "train.tensorboard=false"]
    pcfg = load_config(PretrainConfig, cfg.pretrain_config, words, validate=False)
    # The shapes images only, captions and class ids (the token objectives refuse step weights).
    pcfg.data.sources = [SourceConfig(name="shapes_t2i", kind="caption_images", shards=shards, weight=0.67),
                         SourceConfig(name="shapes_c2i", kind="class_images", shards=shards, weight=0.33)]
    if cell.objective != "rdpm":
        pcfg.data.step_weights = []
    for key in ("code_maps", "grid", "codebook_size"):   # read from the cell's tokenizer
        setattr(pcfg.model.vocab, key, type(getattr(pcfg.model.vocab, key))())
    pcfg.validate()
    return pcfg


def flops_per_step(pcfg: PretrainConfig, batches: int) -> float:
    """Training FLOPs of one optimizer step (one process), averaged over the first `batches`
    packed batches of the cell's data stream: the trainer's own count (pretraining/flops.py)."""
    model, tokenizer = build_unified(pcfg.model, device="cpu")
    data = copy.deepcopy(pcfg.data)
    data.num_workers = 0
    stream = iter(PackedBatchStream(data, model.vocab, tokenizer.cfg.latent_dim,
                                    image_objective=pcfg.model.image_objective))
    layers, total = layer_parameter_count(model), 0.0
    for _ in range(batches):
        batch = next(stream)
        targets, block = batch["targets"] >= 0, batch["block_ids"] >= 0
        total += step_flops(model, batch["input_ids"].numel(), int((targets & ~block).sum()),
                            int((targets & block).sum()), int(block.sum()), data.seq_len, layers)
    return total / batches * pcfg.train.gradient_accumulation


def plan_steps(cell: Cell, per_step: float) -> int:
    steps = int(round(cell.budget / per_step))
    if steps < 1:
        raise ConfigError(f"budgets: {cell.budget:.3g} FLOPs is less than one training step of "
                          f"cell {cell.name} ({per_step:.3g} FLOPs); raise the budget")
    return steps


def train_cell(pcfg: PretrainConfig, config_file: Path, scripts_root: Path,
               fork: bool = False) -> dict:
    """Train (from scratch: an interrupted cell starts over) and export; the last log record.
    The trainer's output goes to train.log beside `config_file`. `fork`: the trainer is a child
    forked from this process, which must not have run a torch op yet (`run_logged`)."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    save_config(pcfg, config_file)
    log_file = config_file.parent / "train.log"
    code = run_logged([str(scripts_root / "train/pretrain.py"), "--config", str(config_file)],
                      log_file, child_env(scripts_root), fork=fork)
    if code != 0:
        raise RuntimeError(f"training {config_file.parent.name} failed (train/pretrain.py "
                           f"--config {config_file}, output in {log_file}):\n{log_tail(log_file)}")
    out = Path(pcfg.train.out_dir)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    if not records or records[-1]["step"] != pcfg.train.steps:
        raise RuntimeError(f"{out}: training ended before step {pcfg.train.steps}")
    return records[-1]
