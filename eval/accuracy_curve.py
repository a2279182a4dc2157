"""Prompt following against training time: score every export of a pretraining run on the shapes
checker and plot accuracy against training minutes.

    python train/pretrain.py --config configs/uni_shapes_gpu.yaml train.export_every=300
    python eval/accuracy_curve.py run=runs/gpu_shapes/pretrain_latent captions=128 per_class=4 \\
        sampling.cfg_scale=2

Each export (`<run>/exports/step_X`, and the final `<run>/export`) is scored by eval/shapes_score.py
in its own process (same sampling options); finished scores are kept, so a rerun only scores new
exports. `jobs=N` scores N exports at once (one GPU has room for several of these small jobs,
which are mostly start-up). The minutes of each step come from the run's log.jsonl
(`elapsed_s`). Writes accuracy_curve.json and accuracy_curve.png under `out` and prints a table
last.
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unimodal.checkpointing import list_checkpoints
from unimodal.cli import overrides_of, parse_config
from unimodal.model.sampling import ImageSamplingConfig

SCORE_SCRIPT = Path(__file__).resolve().parent / "shapes_score.py"


@dataclass
class AccuracyCurveConfig:
    run: str = ""                         # a pretraining train.out_dir
    out: str = ""                         # "" = <run>/accuracy_curve
    captions: int = 128                   # held-out captions per export (eval/shapes_score.py)
    per_class: int = 4                    # images per class id per export
    sampling: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)
    batch_size: int = 32
    device: str = "auto"
    image_decoder: str = ""               # decode with this tokenizer's decoder (eval/shapes_score.py)
    jobs: int = 1                         # exports scored at once, each in its own process

    def validate(self) -> None:
        self.sampling.validate()
        if self.jobs < 1:
            raise ValueError(f"jobs={self.jobs}: must be >= 1")
        if not (Path(self.run) / "log.jsonl").is_file():
            raise FileNotFoundError(f"run={self.run}: no log.jsonl (not a pretraining out_dir)")


def exports_of(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every export of a run, the final one last."""
    found = list_checkpoints(run / "exports")
    log = run / "log.jsonl"
    if (run / "export").is_dir() and log.is_file():
        last = json.loads(log.read_text().splitlines()[-1])["step"]
        found.append((last, run / "export"))
    return found


def minutes_at(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["elapsed_s"] / 60 for r in rows if "elapsed_s" in r}


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = [p["minutes"] for p in points]
    for key, label in (("caption", "held-out captions"), ("class", "class prompts")):
        ax.plot(x, [100 * p[key] for p in points], marker="o", label=label)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("whole prompt correct (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_config(AccuracyCurveConfig, argv, __doc__, __file__)
    run = Path(args.run)
    exports = exports_of(run)
    if not exports:
        raise FileNotFoundError(f"run={args.run}: no exports (train with train.export_every=N)")
    out = Path(args.out) if args.out else run / "accuracy_curve"
    out.mkdir(parents=True, exist_ok=True)
    minutes = minutes_at(run)
    pending = []
    for step, folder in exports:
        target = out / f"step_{step:08d}"
        if not (target / "shapes_score.json").is_file():
            pending.append([sys.executable, str(SCORE_SCRIPT), f"checkpoint={folder}",
                            f"out={target}", f"captions={args.captions}",
                            f"per_class={args.per_class}", f"batch_size={args.batch_size}",
                            f"device={args.device}", f"image_decoder={args.image_decoder}",
                            *overrides_of(args.sampling, "sampling.")])
    for start in range(0, len(pending), args.jobs):
        wave = pending[start:start + args.jobs]
        for cmd in wave:
            print(f"scoring: {' '.join(cmd)}", flush=True)
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in wave]
        for cmd, proc in zip(wave, procs):
            if proc.wait() != 0:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
    points = []
    for step, _ in exports:
        report = out / f"step_{step:08d}" / "shapes_score.json"
        metrics = json.loads(report.read_text())["metrics"]
        points.append({"step": step, "minutes": minutes.get(step, float("nan")),
                       "caption": metrics.get("caption", {}).get("prompt") or 0.0,
                       "class": metrics.get("class", {}).get("prompt") or 0.0})
    (out / "accuracy_curve.json").write_text(json.dumps(points, indent=2))
    plot(points, out / "accuracy_curve.png", f"{args.run}: prompt following vs training time")
    lines = ["| step | minutes | captions: whole prompt | class prompts |", "|---|---|---|---|"]
    lines += [f"| {p['step']} | {p['minutes']:.1f} | {100 * p['caption']:.1f}% | "
              f"{100 * p['class']:.1f}% |" for p in points]
    print("\n".join(lines), flush=True)
    return points


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
