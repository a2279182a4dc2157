"""The study's outputs in the run folder: results.md (one row per cell) and three matplotlib
plots: accuracy vs training FLOPs, FD vs training FLOPs, quality vs inference FLOPs, one line
per objective (and model size)."""

from __future__ import annotations

from pathlib import Path

from unimodal.metrics.shapes_features import METRIC_NAME

PLOTS = ("accuracy_vs_train_flops.png", "distance_vs_train_flops.png",
         "quality_vs_inference_cost.png")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def results_table(results: list[dict], timing_batch_sizes: list[int]) -> str:
    """The markdown table; the FD column says which features it uses (never 'FID')."""
    inception = any("inception_fid" in r["scores"] for r in results)
    header = (["objective", "size", "params", "budget (FLOPs)", "steps", "train FLOPs",
               "captions: prompt %", "colour %", "shape %", "position %", "count %",
               "class prompts %", METRIC_NAME] + (["Inception FID"] if inception else [])
              + ["steps to sample", "inference GFLOPs/img"]
              + [f"ms/img @ batch {b}" for b in timing_batch_sizes])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        s, cap, cls = r["scores"], r["scores"]["captions"] or {}, r["scores"]["classes"] or {}
        row = [r["objective"], r["size"]["name"], _num(s["parameters"]), _num(r["budget"]),
               str(r["steps"]), _num(r["train_flops"]), *(_pct(cap.get(a)) for a in
                                                           ("prompt", "color", "shape", "position", "count")),
               _pct(cls.get("prompt")), _num(s["fd_shapes"], ".4g")]
        row += [_num(s.get("inception_fid"), ".4g")] if inception else []
        row += [str(s["sampling_steps"]), _num(s["inference_flops"] / 1e9)]
        row += [_num(s["ms_per_image"].get(str(b)), ".3g") for b in timing_batch_sizes]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def whole_prompt_accuracy(result: dict) -> float | None:
    """Captions' whole-prompt accuracy, or the class prompts' when no captions were scored."""
    scores = result["scores"]
    return (scores["captions"] or scores["classes"] or {}).get("prompt")


def write_plots(results: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        lines.setdefault((r["objective"], r["size"]["name"]), []).append(r)
    panels = [
        (PLOTS[0], "train_flops", whole_prompt_accuracy, "training FLOPs",
         "whole-prompt accuracy (shapes checker)"),
        (PLOTS[1], "train_flops", lambda r: r["scores"]["fd_shapes"], "training FLOPs",
         f"{METRIC_NAME}, lower is better"),
        (PLOTS[2], "inference_flops", whole_prompt_accuracy, "inference FLOPs per image",
         "whole-prompt accuracy (shapes checker)"),
    ]
    paths = []
    for name, x_key, y_of, x_label, y_label in panels:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (objective, size), rows in sorted(lines.items()):
            rows = sorted(rows, key=lambda r: r["budget"])
            xs = [r[x_key] if x_key in r else r["scores"][x_key] for r in rows]
            ys = [y_of(r) for r in rows]
            ys = [float("nan") if y is None else y for y in ys]
            ax.plot(xs, ys, marker="o", label=f"{objective} ({size})")
        ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        paths.append(out / name)
    return paths


def write_report(results: list[dict], out: Path, timing_batch_sizes: list[int],
                 notes: list[str]) -> str:
    table = results_table(results, timing_batch_sizes)
    text = ("# Image objectives on shapes at fixed training FLOPs\n\n" + table + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n\n"
            + "\n".join(f"![{p}]({p})" for p in PLOTS) + "\n")
    tmp = out / "results.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "results.md")
    write_plots(results, out)
    return table
