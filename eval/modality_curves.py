"""Training curves of an eval/gpu_modalities_run.sh run: where each modality stands and how fast it
was still moving when the run stopped.

    python eval/modality_curves.py run=runs/gpu_modalities          # writes <run>/curves.png

Left: each tokenizer's held-out-batch reconstruction against its steps (PSNR for image and video,
SNR for audio; from <run>/{image,audio,video}_tokenizer/log.jsonl). Right: the mixed model's loss
per modality and the text-only model's text loss against pretraining steps
(<run>/pretrain*/log.jsonl), with ln K, the loss of a uniform guess over a modality's K codes,
dashed: a code loss near it means the model has learned little of that modality yet. Prints a
table last (last value of each curve and its change over the last quarter of the run).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer_config

RECON_KEYS = {"image": "psnr", "audio": "snr", "video": "psnr"}  # tokenizer log key, dB
LOSS_KEYS = ("text_loss", "image_loss", "audio_loss", "video_loss")


@dataclass
class ModalityCurvesConfig:
    run: str = ""                         # RUN_DIR of eval/gpu_modalities_run.sh
    out: str = ""                         # "" = <run>/curves.png


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(log: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in log if isinstance(r.get(key), (int, float))]
    return [r["step"] for r in rows], [float(r[key]) for r in rows]


def late_change(values: list[float]) -> float | None:
    """Last value minus the value a quarter of the points earlier: still moving, or flat."""
    if len(values) < 4:
        return None
    return values[-1] - values[-1 - len(values) // 4]


def collect(run: Path) -> dict:
    curves = {"recon": {}, "loss": {}, "uniform": {}}
    for name, key in RECON_KEYS.items():
        steps, values = series(read_log(run / f"{name}_tokenizer" / "log.jsonl"), key)
        if steps:
            curves["recon"][name] = (steps, values)
        tokenizer = run / f"{name}_tokenizer" / "tokenizer"
        if tokenizer.is_dir():
            curves["uniform"][name] = math.log(load_tokenizer_config(tokenizer).codebook_size)
    mixed = read_log(run / "pretrain" / "log.jsonl")
    for key in LOSS_KEYS:
        steps, values = series(mixed, key)
        if steps:
            curves["loss"][f"mixed {key}"] = (steps, values)
    steps, values = series(read_log(run / "pretrain_text_only" / "log.jsonl"), "text_loss")
    if steps:
        curves["loss"]["text-only text_loss"] = (steps, values)
    return curves


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, (steps, values) in curves["recon"].items():
        left.plot(steps, values, marker=".", label=f"{name} ({RECON_KEYS[name].upper()})")
    left.set_xlabel("tokenizer step")
    left.set_ylabel("reconstruction (dB)")
    left.set_title("tokenizers (held-out batch)", fontsize=9)
    left.legend(fontsize=8)
    colors = {}
    for label, (steps, values) in curves["loss"].items():
        line, = right.plot(steps, values, marker=".", label=label,
                           linestyle=":" if label.startswith("text-only") else "-")
        colors[label.split()[-1].removesuffix("_loss")] = line.get_color()
    for name, value in curves["uniform"].items():
        if name != "image":  # image codes are scored in blocks over their own K; same ln K, one line is enough
            right.axhline(value, color=colors.get(name, "grey"), linestyle="--", linewidth=0.8)
    right.set_xlabel("pretraining step")
    right.set_ylabel("train loss (nats)")
    right.set_title("mixed model per modality (dashed: ln K, a uniform guess)", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_config(ModalityCurvesConfig, argv, __doc__, __file__)
    run = Path(args.run)
    if not run.is_dir():
        raise FileNotFoundError(f"run={args.run}: folder not found")
    curves = collect(run)
    if not curves["recon"] and not curves["loss"]:
        raise FileNotFoundError(f"run={args.run}: no tokenizer or pretraining log.jsonl under it")
    out = Path(args.out) if args.out else run / "curves.png"
    plot(curves, out, str(run))
    print(f"wrote {out}\n")
    print("| curve | steps | last | change over the last quarter | ln K |")
    print("|---|---|---|---|---|")
    for group in ("recon", "loss"):
        for label, (steps, values) in curves[group].items():
            change = late_change(values)
            name = label.split()[-1].removesuffix("_loss") if group == "loss" else label
            uniform = curves["uniform"].get(name)
            print(f"| {label}{' dB' if group == 'recon' else ''} | {steps[-1]} | {values[-1]:.3f} | "
                  f"{'-' if change is None else f'{change:+.3f}'} | "
                  f"{'-' if uniform is None or group == 'recon' else f'{uniform:.3f}'} |")
    return curves


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
