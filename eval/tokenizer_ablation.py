"""Train tokenizer variants side by side on one GPU and compare held-out PSNR/SSIM/usage.

    python eval/tokenizer_ablation.py tokenizer_config=configs/rdpm_shapes_gpu.yaml
    python eval/tokenizer_ablation.py tokenizer_config=... variants.rdpm_T10= variants.vq_T1="model.code_maps=1"
    python eval/tokenizer_ablation.py tokenizer_config=... preset=table2 overrides="train.steps=800"

Each variant is tokenizers/train_rdpm.py --config <tokenizer_config> with the common `overrides`
and then the variant's own key=value words, run as its own process (all at once, so they share the
machine's conditions); every variant uses the same data, held-out images, codebook size and step
count. The variants are `variants.NAME="key=value ..."` (one key per variant; a name with a dot is
written in a --config YAML, `variants: {NAME: "..."}`) or else the named set `preset`: default
(RDPM T=10 vs VQ T=1), latent_dim, table2 (see PRESETS). On shapes data the table includes the
prompt checker's accuracy on the reconstructions (the ceiling of any generator on that tokenizer).
Prints a table last and writes ablation.json and ablation.md under `out`.
"""

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.config import ConfigError, load_config
from unimodal.tokenizer.training_config import TokenizerTrainConfig

DEFAULT_VARIANTS = {
    "rdpm_T10_weight_bias": "model.code_maps=10 model.step_weighting=true model.shared_bias=true",
    "vq_T1": "model.code_maps=1 model.shared_bias=false",
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
        "vq_T1_d32": "model.code_maps=1 model.shared_bias=false model.latent_dim=32",
        "vq_T1_d8": "model.code_maps=1 model.shared_bias=false model.latent_dim=8",
    },
    # The RDPM paper's Table 2 at shapes scale (T, gamma_t = a_t weight, shared bias).
    "table2": {
        "T6": "model.code_maps=6 model.step_weighting=false model.shared_bias=false",
        "T10": "model.code_maps=10 model.step_weighting=false model.shared_bias=false",
        "T14": "model.code_maps=14 model.step_weighting=false model.shared_bias=false",
        "T10_weight": "model.code_maps=10 model.step_weighting=true model.shared_bias=false",
        "T10_bias": "model.code_maps=10 model.step_weighting=false model.shared_bias=true",
        "T10_weight_bias": "model.code_maps=10 model.step_weighting=true model.shared_bias=true",
        "T1_vq": "model.code_maps=1 model.shared_bias=false",
    },
}


@dataclass
class TokenizerAblationConfig:
    tokenizer_config: str = ""            # the tokenizers/train_rdpm.py YAML of every variant (required)
    out: str = "runs/tokenizer_ablation"  # each variant trains in <out>/<name>
    preset: str = "default"               # a named set of variants (PRESETS), when variants is empty
    variants: dict[str, str] = field(default_factory=dict)  # NAME -> "key=value ..." of that variant
    overrides: str = ""                   # key=value words every variant gets, before its own

    def validate(self) -> None:
        if not self.tokenizer_config:
            raise ConfigError("tokenizer_config is required (a tokenizers/train_rdpm.py YAML)")
        if not Path(self.tokenizer_config).is_file():
            raise FileNotFoundError(f"tokenizer_config={self.tokenizer_config}: no such file")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset={self.preset!r}: choose one of {sorted(PRESETS)}")
        # A bad key fails here, naming where it was given, rather than in every variant's process.
        checks = {"overrides": _words(self.overrides, "overrides"),
                  **{f"variants.{name}": words for name, words in self.runs().items()}}
        for where, words in checks.items():
            try:
                load_config(TokenizerTrainConfig, self.tokenizer_config, words, validate=False)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}".replace("command line: ", "")) from err

    def chosen(self) -> dict[str, str]:
        """NAME -> the variant's own overrides: `variants`, or else the preset's."""
        return dict(self.variants) or PRESETS[self.preset]

    def runs(self) -> dict[str, list[str]]:
        """NAME -> every override word of that variant's run (the common ones first)."""
        common = _words(self.overrides, "overrides")
        return {name: [*common, *_words(text, f"variants.{name}")]
                for name, text in self.chosen().items()}


def _words(text: str, where: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise ConfigError(f"{where}={text!r}: {err}") from err
    bad = [w for w in words if "=" not in w or w.startswith(("=", "-"))]
    if bad:
        raise ConfigError(f"{where}: {bad} are not key=value words of the tokenizer config")
    return words


def main(argv=None):
    args = parse_config(TokenizerAblationConfig, argv, __doc__, __file__)
    variants = args.chosen()
    script = Path(__file__).resolve().parents[1] / "tokenizers" / "train_rdpm.py"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs, start = {}, time.perf_counter()
    for name, words in args.runs().items():
        cmd = [sys.executable, str(script), "--config", args.tokenizer_config, *words,
               f"train.out_dir={out / name}"]
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
    print(f"\nheld-out reconstruction, {args.tokenizer_config} {args.overrides} "
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
