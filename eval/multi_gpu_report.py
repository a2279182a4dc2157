"""The tables of eval/gpu_multi_run.sh, from the files its runs left in one folder:

    python eval/multi_gpu_report.py run_dir=runs/gpu_multi

- Scaling (`scale_<gpus>gpu_zero<stage>.json`, from eval/bench_pretrain.py json=FILE): tokens/s per
  GPU of each 2-GPU ZeRO stage against the 1-GPU run of the same micro-batch, i.e. efficiency =
  per-GPU tokens/s at N GPUs / tokens/s at 1 GPU.
- Kill and resume (`straight/`, `killed/`): the loss of every step of the interrupted-and-resumed
  run against the uninterrupted one (bitwise equal, or the largest difference), and whether each
  rank's data position in the last checkpoint is the same.
- 2 GPUs -> 1 (`one_gpu/`): the losses after resuming the 2-GPU checkpoint on one GPU, beside the
  2-GPU run's losses at the same steps.
Writes `multi_gpu.md` there too.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.config import ConfigError


@dataclass
class MultiGpuReportConfig:
    run_dir: str = ""                     # the folder eval/gpu_multi_run.sh wrote (runs/gpu_multi)

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("run_dir is required (the folder eval/gpu_multi_run.sh wrote)")
        if not Path(self.run_dir).is_dir():
            raise FileNotFoundError(f"run_dir={self.run_dir}: no such folder")


def load_log(run: Path) -> dict[int, dict]:
    """step -> record; a resumed run's later records replace the earlier ones."""
    path = run / "log.jsonl"
    if not path.is_file():
        return {}
    return {r["step"]: r for r in map(json.loads, path.read_text().splitlines())}


def scaling_table(run_dir: Path) -> list[str]:
    rows = {p.stem.removeprefix("scale_"): json.loads(p.read_text())
            for p in sorted(run_dir.glob("scale_*.json"))}
    if not rows:
        return ["(no scaling runs found)"]
    base = next((r for name, r in rows.items() if r["world_size"] == 1), None)
    any_row = next(iter(rows.values()))
    lines = [f"Pretraining throughput, {any_row['device']}, synthetic packed batches of the "
             f"config's layout: micro-batch {any_row['micro_batch_rows']} x "
             f"{any_row['seq_len']} tokens per GPU, gradient accumulation "
             f"{any_row['gradient_accumulation']}, torch.compile {any_row.get('compile')}; "
             "median of timed windows.", "",
             "| GPUs | ZeRO | tokens/s | tokens/s per GPU | scaling efficiency | TFLOP/s per GPU "
             "| MFU | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["world_size"], kv[1]["zero_stage"])):
        eff = (f"{r['tokens_per_s_per_gpu'] / base['tokens_per_s_per_gpu']:.1%}"
               if base and r["world_size"] > 1 else "-")
        lines.append(f"| {r['world_size']} | {r['zero_stage']} | {r['tokens_per_s']:.0f} | "
                     f"{r['tokens_per_s_per_gpu']:.0f} | {eff} | "
                     f"{r['tflops'] / r['world_size']:.1f} | {r['mfu']:.1%} | "
                     f"{r['peak_mem_gib']:.1f} |")
    return lines


def resume_table(run_dir: Path) -> list[str]:
    straight, killed = load_log(run_dir / "straight"), load_log(run_dir / "killed")
    if not straight or not killed:
        return ["(no kill-and-resume runs found)"]
    steps = sorted(set(straight) & set(killed))
    diffs = [abs(straight[s]["loss"] - killed[s]["loss"]) for s in steps]
    equal = sum(straight[s]["loss"] == killed[s]["loss"] for s in steps)
    kill = (run_dir / "kill_step.txt").read_text().strip() if (run_dir / "kill_step.txt").is_file() else "?"
    last = max(steps) if steps else 0
    data_same = []
    for rank in (0, 1):
        name = f"checkpoints/step_{last:08d}/data_rank{rank:05d}.json"
        a, b = run_dir / "straight" / name, run_dir / "killed" / name
        data_same.append(a.is_file() and b.is_file() and a.read_text() == b.read_text())
    return ["Kill one rank and resume on 2 GPUs, against an uninterrupted 2-GPU run:", "",
            "| rank 1 killed after step | steps compared | bitwise equal losses | largest |diff| "
            "| data position at the last checkpoint equal (rank 0, rank 1) |",
            "|---|---|---|---|---|",
            f"| {kill} | {len(steps)} of {len(straight)} | {equal} | {max(diffs):.3g} | "
            f"{data_same[0]}, {data_same[1]} |"]


def one_gpu_table(run_dir: Path) -> list[str]:
    straight, one = load_log(run_dir / "straight"), load_log(run_dir / "one_gpu")
    if not straight or not one:
        return ["(no 2-GPU -> 1-GPU resume found)"]
    first = min(one)
    lines = [f"The 2-GPU checkpoint of step {first - 1} resumed on 1 GPU (gradient accumulation "
             "doubled: same global batch; the data stream restarts, so losses differ by the "
             "batches drawn):", "", "| step | loss, 2 GPUs | loss, resumed on 1 GPU | lr equal |",
             "|---|---|---|---|"]
    show = sorted(one)
    for step in show[:3] + show[-2:] if len(show) > 5 else show:
        ref = straight.get(step)
        lines.append(f"| {step} | {ref['loss']:.4f} | {one[step]['loss']:.4f} | "
                     f"{abs(ref['lr'] - one[step]['lr']) < 1e-12} |" if ref else
                     f"| {step} | - | {one[step]['loss']:.4f} | - |")
    lines.append(f"\nFirst step of the 2-GPU run: loss {straight[min(straight)]['loss']:.4f}.")
    return lines


def main(argv=None):
    run_dir = Path(parse_config(MultiGpuReportConfig, argv, __doc__, __file__).run_dir)
    text = "\n".join([*scaling_table(run_dir), "", *resume_table(run_dir), "",
                      *one_gpu_table(run_dir)])
    (run_dir / "multi_gpu.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
