"""Train tokenizer variants side by side on one GPU and compare held-out PSNR/SSIM/usage.

    python eval/tokenizer_ablation.py --config configs/rdpm_shapes_gpu.yaml
    python eval/tokenizer_ablation.py --config ... --variant rdpm_T10="" --variant vq_T1="model.steps=1"

Each variant is tokenizers/train_rdpm.py with extra overrides, run as its own process (all at once,
so they share the machine's conditions); every variant uses the same data, held-out images,
codebook size and step count. On shapes data the table includes the prompt checker's accuracy on
the reconstructions (the ceiling of any generator on that tokenizer). Prints a table last and
writes ablation.json and ablation.md.

    --preset latent_dim | table2    named sets of variants (see PRESETS)
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_VARIANTS = {
    "rdpm_T10_weight_bias": "model.steps=10 model.step_weighting=true model.shared_bias=true",
    "vq_T1": "model.steps=1 model.shared_bias=false",
}
PRESETS = {
    "default": DEFAULT_VARIANTS,
    # Why RDPM loses content, and the fix: the quantizer's resolution per latent channel.
    "latent_dim": {
        "rdpm_d32": "model.latent_dim=32",
        "rdpm_d8": "model.latent_dim=8",
        "rdpm_d4": "model.latent_dim=4",
        "rdpm_d8_phi0.9": "model.latent_dim=8 model.phi=0.9",
        "rdpm_d8_noise0.5": "model.latent_dim=8 model.noise_scale=0.5",
        "vq_T1_d32": "model.steps=1 model.shared_bias=false model.latent_dim=32",
        "vq_T1_d8": "model.steps=1 model.shared_bias=false model.latent_dim=8",
    },
    # The RDPM paper's Table 2 at shapes scale (T, gamma_t = a_t weight, shared bias).
    "table2": {
        "T6": "model.steps=6 model.step_weighting=false model.shared_bias=false",
        "T10": "model.steps=10 model.step_weighting=false model.shared_bias=false",
        "T14": "model.steps=14 model.step_weighting=false model.shared_bias=false",
        "T10_weight": "model.steps=10 model.step_weighting=true model.shared_bias=false",
        "T10_bias": "model.steps=10 model.step_weighting=false model.shared_bias=true",
        "T10_weight_bias": "model.steps=10 model.step_weighting=true model.shared_bias=true",
        "T1_vq": "model.steps=1 model.shared_bias=false",
    },
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="runs/tokenizer_ablation")
    parser.add_argument("--variant", action="append", default=[],
                        help='NAME="override ..." (repeatable); default: RDPM T=10 vs VQ T=1')
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="a named set of variants (ignored when --variant is given)")
    args, common = parser.parse_known_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant) or PRESETS[args.preset]
    script = Path(__file__).resolve().parents[1] / "tokenizers" / "train_rdpm.py"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs, start = {}, time.perf_counter()
    for name, overrides in variants.items():
        cmd = [sys.executable, str(script), "--config", args.config, *common,
               *shlex.split(overrides), f"train.out_dir={out / name}"]
        log = open(out / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"started {name}: {' '.join(cmd)}", flush=True)
    results = {}
    for name, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        metrics_file = out / name / "metrics.json"
        if code != 0 or not metrics_file.exists():
            print(f"{name} failed (exit {code}); see {out / f'{name}.log'}", flush=True)
            continue
        results[name] = json.loads(metrics_file.read_text())
        lines = (out / name / "log.jsonl").read_text().splitlines()
        results[name]["train_img_per_s"] = json.loads(lines[-1]).get("img_per_s")
    results["_wall_s"] = time.perf_counter() - start
    (out / "ablation.json").write_text(json.dumps(results, indent=2))
    (out / "ablation.md").write_text(format_table(variants, results) + "\n")
    print(f"\nheld-out reconstruction, {args.config} {' '.join(common)} "
          f"(wall {results['_wall_s']:.0f}s, all variants at once)")
    print(format_table(variants, results))
    return results


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def format_table(variants, results: dict) -> str:
    """Markdown: fidelity, the shapes checker on the reconstructions (when the data is shapes),
    and the latent error |z - z'_T|^2 the decoder starts from."""
    lines = ["| variant | steps | PSNR dB | SSIM | usage | latent err | whole prompt | colour | "
             "shape | position | 3 objects |", "|---" * 11 + "|"]
    for name in variants:
        r = results.get(name)
        if not r:
            lines.append(f"| {name} | failed |" + " |" * 9)
            continue
        c = r.get("checker", {})
        err = r.get("per_step", {}).get("final_error", [float("nan")])[0]
        lines.append(f"| {name} | {r['step']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r.get('codebook_usage', 0):.3f} | {err:.3f} | {_pct(c.get('prompt'))} | "
                     f"{_pct(c.get('color'))} | {_pct(c.get('shape'))} | {_pct(c.get('position'))} | "
                     f"{_pct(c.get('prompt_3_objects'))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
