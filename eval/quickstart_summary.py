"""Print the quickstart's two shapes-checker numbers side by side: the tokenizer's ceiling (its own
reconstructions) and the unified model's prompt following.

    python eval/quickstart_summary.py recon=runs/quickstart/recon score=runs/quickstart/shapes_score
"""

import json
from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config


@dataclass
class SummaryConfig:
    recon: str = "runs/quickstart/recon"  # eval/recon.py output folder (shapes data)
    score: str = "runs/quickstart/shapes_score"  # eval/shapes_score.py output folder


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def main(argv=None):
    args = parse_config(SummaryConfig, argv, __doc__, __file__)
    ceiling = json.loads((Path(args.recon) / "recon_metrics.json").read_text())["metrics"]
    score = json.loads((Path(args.score) / "shapes_score.json").read_text())["metrics"]
    if "checker_prompt" not in ceiling:
        raise ValueError(f"{args.recon}: no checker metrics (was eval/recon.py run on shapes data?)")
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
