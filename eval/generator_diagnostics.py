"""Where does image generation go wrong? Per-step teacher forcing, the conditioning check and
oracle-prefix sampling on held-out shapes scenes (see unimodal/metrics/generator_diagnostics.py).

    python eval/generator_diagnostics.py checkpoint=runs/gpu_shapes/pretrain/export images=128

Writes generator_diagnostics.json and a PNG of the per-step curves under `out`; prints the tables last.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from unimodal.cli import parse_config
from unimodal.distributed import pick_device
from unimodal.eval_sampling import SamplingRunConfig
from unimodal.metrics.generator_diagnostics import (heldout_scenes, oracle_prefix_accuracy,
                                                    teacher_forced_steps)
from unimodal.model.export import load_unified
from unimodal.model.sampling import compile_for_sampling


@dataclass
class DiagnosticsConfig(SamplingRunConfig):
    batch_size: int = 64                  # images per teacher-forcing and sampling batch
    images: int = 128                     # held-out scenes
    prefix_steps: list[int] = field(default_factory=list)  # oracle prefix lengths k; [] = 0, 2, ..., T
    out: str = "runs/generator_diagnostics"

    def validate(self) -> None:
        super().validate()
        if self.images < 2:
            raise ValueError(f"images={self.images}: need at least 2 (the shuffled check pairs them)")


def plot(per_step: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, rows in per_step.items():
        steps = range(1, len(rows["accuracy"]) + 1)
        axes[0].plot(steps, rows["accuracy"], marker="o", label=name)
        axes[1].plot(steps, rows["loss"], marker="o", label=name)
    axes[0].set_title("teacher-forced code accuracy")
    axes[1].set_title("teacher-forced cross-entropy")
    for ax in axes:
        ax.set_xlabel("step t")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_config(DiagnosticsConfig, argv, __doc__, __file__)
    sampling = args.sampling
    device = pick_device(args.device)
    model, tokenizer = load_unified(args.checkpoint, device, image_decoder=args.image_decoder)
    if args.compile:
        compile_for_sampling(model, tokenizer)
    code_maps = model.tok_cfg.code_maps
    prefix_steps = args.prefix_steps or sorted({*range(0, code_maps + 1, 2), code_maps})
    if any(not 0 <= k <= code_maps for k in prefix_steps):
        raise ValueError(f"prefix_steps={prefix_steps}: each must be in 0..{code_maps}")
    images, scenes = heldout_scenes(args.images, model.tok_cfg.image_size)
    seeds = [sampling.image_seed(i) for i in range(args.images)]
    captions = [s.caption for s in scenes]
    per_step = {}
    for name, prompts in (("true prompt", captions), ("shuffled prompt", captions[1:] + captions[:1]),
                          ("no prompt", [None] * len(captions))):
        rows = {"accuracy": [], "loss": []}
        for start in range(0, args.images, args.batch_size):
            part = slice(start, start + args.batch_size)
            r = teacher_forced_steps(model, tokenizer, images[part], prompts[part], seeds[part])
            n = len(seeds[part]) / args.images
            for key in rows:
                rows[key] = [a + n * b for a, b in zip(rows[key], r[key])] if rows[key] else \
                    [n * b for b in r[key]]
        per_step[name] = rows
    oracle = oracle_prefix_accuracy(model, tokenizer, images, scenes, seeds, prefix_steps,
                                    sampling, args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": args.checkpoint, "images": args.images, "per_step": per_step,
              "oracle_prefix": {str(k): v for k, v in oracle.items()},
              "sampling": asdict(sampling)}
    (out / "generator_diagnostics.json").write_text(json.dumps(report, indent=2))
    plot(per_step, out / "generator_diagnostics.png")
    head = "| step t | " + " | ".join(str(t) for t in range(1, code_maps + 1)) + " |"
    lines = [f"teacher-forced per step ({args.images} held-out scenes)", head,
             "|---" * (code_maps + 1) + "|"]
    for name, rows in per_step.items():
        for key in ("accuracy", "loss"):
            lines.append(f"| {key}, {name} | " + " | ".join(f"{x:.3f}" for x in rows[key]) + " |")
    lines += ["", "oracle prefix: steps 1..k from the tokenizer, the rest sampled (checker accuracy)",
              "| k | whole prompt | colour | shape | position | 3 objects |", "|---|---|---|---|---|---|"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for k, m in oracle.items():
        lines.append(f"| {k} | {pct(m['prompt'])} | {pct(m['color'])} | {pct(m['shape'])} | "
                     f"{pct(m['position'])} | {pct(m['prompt_3_objects'])} |")
    table = "\n".join(lines)
    (out / "generator_diagnostics.md").write_text(table + "\n")
    print(table, flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
