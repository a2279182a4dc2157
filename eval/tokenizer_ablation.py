"""Train tokenizer variants side by side on one GPU and compare held-out PSNR/SSIM/usage.

    python eval/tokenizer_ablation.py --config configs/rdpm_shapes_gpu.yaml
    python eval/tokenizer_ablation.py --config ... --variant rdpm_T10="" --variant vq_T1="model.steps=1"

Each variant is tokenizers/train_rdpm.py with extra overrides, run as its own process (all at once,
so they share the machine's conditions); every variant uses the same data, held-out images,
codebook size and step count. Prints a table last and writes ablation.json.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="runs/tokenizer_ablation")
    parser.add_argument("--variant", action="append", default=[],
                        help='NAME="override ..." (repeatable); default: RDPM T=10 vs VQ T=1')
    args, common = parser.parse_known_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant) or DEFAULT_VARIANTS
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
    print(f"\nheld-out reconstruction, {args.config} {' '.join(common)} "
          f"(wall {results['_wall_s']:.0f}s, all variants at once)")
    print("| variant | steps | PSNR dB | SSIM | codebook usage | images |")
    print("|---|---|---|---|---|---|")
    for name in variants:
        r = results.get(name)
        if r:
            print(f"| {name} | {r['step']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                  f"{r.get('codebook_usage', 0):.3f} | {r['images']} |")
        else:
            print(f"| {name} | failed | | | | |")
    return results


if __name__ == "__main__":
    main()
