"""Prompt following against training time: score every export of a pretraining run on the shapes
checker and plot accuracy against training minutes.

    python train/pretrain.py --config configs/uni_shapes_gpu.yaml train.export_every=300
    python eval/accuracy_curve.py --run runs/gpu_shapes/pretrain_latent --captions 128 --per-class 4

Each export (`<run>/exports/step_X`, and the final `<run>/export`) is scored by eval/shapes_score.py
in its own process (same sampling options); finished scores are kept, so a rerun only scores new
exports. The minutes of each step come from the run's log.jsonl (`elapsed_s`). Writes
accuracy_curve.json and accuracy_curve.png under --out and prints a table last.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from unimodal.checkpointing import list_checkpoints

SCORE_SCRIPT = Path(__file__).resolve().parent / "shapes_score.py"
SAMPLING_FLAGS = ("--cfg-scale", "--cfg-schedule", "--temperature", "--top-k", "--seed",
                  "--batch-size", "--device")


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a pretraining train.out_dir")
    parser.add_argument("--out", type=Path, default=None, help="default: <run>/accuracy_curve")
    parser.add_argument("--captions", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=4)
    args, sampling = parser.parse_known_args(argv)
    unknown = [a for a in sampling if a.startswith("--") and a.split("=")[0] not in SAMPLING_FLAGS]
    if unknown:
        parser.error(f"unknown options {unknown}; sampling options: {SAMPLING_FLAGS}")
    if not (args.run / "log.jsonl").is_file():
        raise FileNotFoundError(f"--run {args.run}: no log.jsonl (not a pretraining out_dir)")
    exports = exports_of(args.run)
    if not exports:
        raise FileNotFoundError(f"--run {args.run}: no exports (train with train.export_every=N)")
    out = args.out or args.run / "accuracy_curve"
    out.mkdir(parents=True, exist_ok=True)
    minutes = minutes_at(args.run)
    points = []
    for step, folder in exports:
        target = out / f"step_{step:08d}"
        report = target / "shapes_score.json"
        if not report.is_file():
            cmd = [sys.executable, str(SCORE_SCRIPT), "--checkpoint", str(folder), "--out",
                   str(target), "--captions", str(args.captions), "--per-class",
                   str(args.per_class), *sampling]
            print(f"scoring step {step}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
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
