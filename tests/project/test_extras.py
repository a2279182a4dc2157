"""pyproject's dependency contract: which modules import with the base dependencies alone, and which
need an extra. Every module of the package is imported in a fresh interpreter with the optional
packages blocked; the modules that fail must be exactly the ones declared here (and in README), so
a core module that starts to need an extra fails, and so does a stale entry. (Blocking one extra's
packages while allowing another's is not tested: transformers probes for optional packages and
treats a blocked-but-present one as broken, which an uninstalled one is not.)"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# optional package (import name) -> the extra that installs it
OPTIONAL = {"transformers": "train", "deepspeed": "train", "sentencepiece": "train",
            "tensorboard": "train", "tokenizers": "train", "torchmetrics": "eval",
            "torch_fidelity": "eval", "lpips": "eval", "open_clip": "eval", "scipy": "eval",
            "matplotlib": "eval", "flash_attn": "flash", "soundfile": "audio",
            "av": "video", "torchao": "fp8"}

# module -> the extras it needs (README "Set up and run" says the same in words)
NEEDS_EXTRAS = {
    "unimodal.model.llama": {"train"}, "unimodal.model.unified": {"train"},
    "unimodal.model.sampling": {"train"}, "unimodal.model.export": {"train"},
    "unimodal.pretraining.config": {"train"}, "unimodal.pretraining.flops": {"train"},
    "unimodal.pretraining.trainer": {"train"}, "unimodal.pretraining.optimizer": {"train"},
    "unimodal.random_models": {"train"},
    "unimodal.eval_sampling": {"train"},
    "unimodal.metrics.reconstruction": {"eval"}, "unimodal.metrics.generation": {"eval"},
    "unimodal.metrics.recon_eval": {"eval"}, "unimodal.metrics.shapes_checker": {"eval"},
    "unimodal.metrics.shapes_features": {"eval"}, "unimodal.metrics.video_checker": {"eval"},
    "unimodal.metrics.video_reconstruction": {"eval"},
    "unimodal.metrics.modality_following": {"eval"},
    "unimodal.metrics.generator_diagnostics": {"eval", "train"},
    "unimodal.tokenizer.diagnostics": {"eval"}, "unimodal.tokenizer.training": {"eval"},
    "unimodal.tokenizer.training_modalities": {"eval"},
    "unimodal.pretraining.inference_cost": {"train"},
    "unimodal.pretraining.transformers_peer": {"train"},
    "unimodal.objective_study.config": {"eval"}, "unimodal.objective_study.cell": {"train"}, "unimodal.objective_study.prepare": {"eval"},
    "unimodal.objective_study.report": {"eval"}, "unimodal.objective_study.scoring": {"eval", "train"},
    "unimodal.objective_study.study": {"eval", "train"},
    "unimodal.objective_study.cell_worker": {"eval", "train"},
    "unimodal.objective_study.schedule": {"eval", "train"},
}

PROBE = """
import importlib, json, pkgutil, sys
optional = json.loads(sys.argv[1])
blocked = set(json.loads(sys.argv[2]))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"blocked: {name}", name=name.split(".")[0])
        return None

sys.meta_path.insert(0, Blocker())
import unimodal
failed = {}
for info in pkgutil.walk_packages(unimodal.__path__, "unimodal."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as e:
        failed[info.name] = optional.get(e.name, "not optional: " + str(e.name))
print(json.dumps(failed))
"""


def import_failures(blocked: set[str]) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(OPTIONAL), json.dumps(sorted(blocked))],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_core_imports_without_any_extra():
    failed = import_failures(set(OPTIONAL))
    assert set(failed) == set(NEEDS_EXTRAS), (
        f"need an extra but are not declared: {sorted(set(failed) - set(NEEDS_EXTRAS))}; "
        f"declared but import without extras: {sorted(set(NEEDS_EXTRAS) - set(failed))}")
    for module, extra in failed.items():
        assert extra in NEEDS_EXTRAS[module], (module, extra)

