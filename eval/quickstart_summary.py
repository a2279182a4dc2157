"""Print the quickstart's two shapes-checker numbers side by side: the tokenizer's ceiling (its own
reconstructions) and the unified model's prompt following.

    python eval/quickstart_summary.py tokenizer_run=runs/quickstart/tokenizer score=runs/quickstart/shapes_score
    python eval/quickstart_summary.py recon=runs/my_recon score=runs/quickstart/shapes_score

The ceiling comes from the tokenizer training's own held-out evaluation (`metrics.json` of its
`train.out_dir`, `train.eval_images` images), or from an eval/recon.py folder when `recon` is set.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config


@dataclass
class SummaryConfig:
    tokenizer_run: str = "runs/quickstart/tokenizer"  # tokenizers/train_rdpm.py train.out_dir
    recon: str = ""                       # or an eval/recon.py output folder (shapes data)
    score: str = "runs/quickstart/shapes_score"  # eval/shapes_score.py output folder


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ceiling(args: SummaryConfig) -> dict:
    """checker_prompt/_color/_shape/_position and psnr of the tokenizer's own reconstructions."""
    if args.recon:
        where, metrics = args.recon, json.loads(
            (Path(args.recon) / "recon_metrics.json").read_text())["metrics"]
    else:  # the training run's metrics.json nests the checker's numbers
        where, run = args.tokenizer_run, json.loads(
            (Path(args.tokenizer_run) / "metrics.json").read_text())
        checker = run.get("checker", {})
        metrics = {"psnr": run["psnr"], **{f"checker_{k}": v for k, v in checker.items()}}
    if "checker_prompt" not in metrics:
        raise ValueError(f"{where}: no checker metrics (was the tokenizer trained or evaluated "
                         "on shapes data?)")
    return metrics


def main(argv=None):
    args = parse_config(SummaryConfig, argv, __doc__, __file__)
    ceiling = _ceiling(args)
    score = json.loads((Path(args.score) / "shapes_score.json").read_text())["metrics"]
    lines = ["shapes checker: whole prompt (colour / shape / position)",
             f"  tokenizer reconstructions, the ceiling: {ceiling['checker_prompt']:.1%} "
             f"({_pct(ceiling['checker_color'])} / {_pct(ceiling['checker_shape'])} / "
             f"{_pct(ceiling['checker_position'])}), PSNR {ceiling['psnr']:.1f} dB"]
    for kind in ("caption", "class"):
        if kind in score:
            m = score[kind]
            lines.append(f"  unified model, held-out {kind} prompts: {m['prompt']:.1%} "
                         f"({_pct(m['color'])} / {_pct(m['shape'])} / {_pct(m['position'])})")
    print("\n".join(lines), flush=True)
    return ceiling, score


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
