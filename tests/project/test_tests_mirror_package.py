"""tests/ mirrors the package (README "Tests"): unimodal/<sub>/<module>.py is tested in
tests/<sub>/test_<module>.py, a top-level unimodal/<module>.py in tests/top/test_<module>.py, and a
package __init__.py that holds code in tests/<sub>/<package>/test_<package>.py. Besides the
mirrored folders there are tests/scripts (the entry scripts end to end) and tests/project (layout,
README, extras, layers, this file); the fixture modules sit at tests/ itself.

A module without its mirrored file must be listed in EXEMPT with the test files that cover it, or
as "no direct test yet". An exemption goes stale (and fails here) once the mirrored file exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "unimodal"
TESTS = ROOT / "tests"
TOP = "top"  # the folder for unimodal/*.py
NOT_MIRRORS = {"scripts", "project"}  # test folders that mirror no package folder

# Module -> where it is tested instead. Covered only through another module's tests or a script's
# end-to-end test; "no direct test yet" where nothing checks its behaviour.
EXEMPT = {
    # top level
    "unimodal/distributed.py": "tests/pretraining/test_trainer.py (one and two ranks, the launcher)",
    "unimodal/images.py": "tests/scripts/test_eval_scripts.py (PNGs written by the eval scripts)",
    "unimodal/random_models.py": "no direct test yet (benchmark-only builders; "
                                 "tests/project/test_extras.py only imports it)",
    # data
    "unimodal/data/data_config.py": "tests/data/test_mixture.py, tests/data/test_image_sources.py "
                                    "(config errors name the key)",
    "unimodal/data/mixture_report.py": "tests/scripts/test_mixing_scripts.py (mixing/inspect.py), "
                                       "tests/model/objectives/test_rdpm_step_weights.py",
    "unimodal/data/sample_documents.py": "tests/model/objectives/test_rdpm.py, "
                                         "tests/pretraining/test_flops.py",
    "unimodal/data/sequences.py": "tests/data/test_mixture.py (packing), "
                                  "tests/model/test_unified_end_to_end.py",
    "unimodal/data/shard_reader.py": "tests/data/test_mixture.py (disjoint readers, exact resume)",
    "unimodal/data/text_corpus.py": "tests/model/test_vocabulary.py",
    "unimodal/data/text_shards.py": "tests/data/test_mixture.py, "
                                    "tests/scripts/test_mixing_scripts.py (tokenizers/encode_text.py)",
    # metrics
    "unimodal/metrics/generator_diagnostics.py": "tests/metrics/test_fidelity_diagnostics.py",
    "unimodal/metrics/recon_eval.py": "tests/metrics/test_fidelity_diagnostics.py (eval/recon.py)",
    "unimodal/metrics/reconstruction.py": "tests/metrics/test_fidelity_diagnostics.py (PSNR), "
                                          "tests/top/test_checkpointing.py (Inception weights)",
    "unimodal/metrics/report.py": "tests/scripts/test_eval_scripts.py (the reports of eval/fid.py "
                                  "and eval/shapes_score.py)",
    "unimodal/metrics/smoke_weights.py": "tests/metrics/test_clip_score.py, "
                                         "tests/metrics/test_generation.py (test support it writes)",
    # model
    "unimodal/model/document.py": "tests/model/test_unified.py, tests/data/test_mixture.py",
    "unimodal/model/export.py": "tests/model/test_unified.py (export), "
                                "tests/pretraining/test_trainer.py",
    "unimodal/model/llama.py": "tests/model/test_unified.py (Llama parity)",
    # objective_study: its end-to-end test runs the whole grid through eval/objectives.py
    "unimodal/objective_study/cell.py": "tests/objective_study/test_study.py (plan_steps, cells)",
    "unimodal/objective_study/cell_worker.py": "tests/objective_study/test_study.py (every cell)",
    "unimodal/objective_study/child_process.py": "tests/objective_study/test_schedule.py, "
                                                 "tests/objective_study/test_study.py",
    "unimodal/objective_study/config.py": "tests/objective_study/test_study.py (bad configs)",
    "unimodal/objective_study/prepare.py": "tests/objective_study/test_study.py",
    "unimodal/objective_study/report.py": "tests/objective_study/test_study.py (table, plots)",
    "unimodal/objective_study/scoring.py": "tests/objective_study/test_study.py",
    # tokenizer
    "unimodal/tokenizer/diagnostics.py": "tests/metrics/test_fidelity_diagnostics.py (per-step "
                                         "statistics, prefix PSNR)",
    "unimodal/tokenizer/training_config.py": "tests/tokenizer/test_training.py, "
                                             "tests/top/test_config.py",
}


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def modules() -> list[str]:
    """Every module of the package, as `unimodal/...py`; an __init__.py only if it holds code."""
    return sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")
                  if "__pycache__" not in p.parts and (p.name != "__init__.py" or _has_code(p)))


def mirrored(module: str) -> Path:
    parts = Path(module).parts[1:]  # without "unimodal"
    folder, name = parts[:-1], Path(parts[-1]).stem
    if name == "__init__":
        name = folder[-1]
    return TESTS.joinpath(*(folder or (TOP,)), f"test_{name}.py")


def test_every_module_has_its_test_file():
    missing = [f"{m} -> {mirrored(m).relative_to(ROOT)}" for m in modules()
               if m not in EXEMPT and not mirrored(m).is_file()]
    assert not missing, ("no test file at the mirrored path (write it, or add the module to EXEMPT "
                         "naming the tests that cover it):\n  " + "\n  ".join(missing))


def test_exemptions_are_current_and_name_real_files():
    present = set(modules())
    for module, where in EXEMPT.items():
        assert module in present, f"EXEMPT names {module}, which is not a module (any more)"
        assert not mirrored(module).is_file(), \
            f"{module} has {mirrored(module).relative_to(ROOT)} now: drop it from EXEMPT"
        cited = re.findall(r"tests/[\w/]+\.py", where)
        assert cited or where.startswith("no direct test yet"), f"{module}: say where, or say so"
        for path in cited:
            assert (ROOT / path).is_file(), f"EXEMPT[{module!r}] cites {path}, which is missing"


def test_test_folders_mirror_package_folders():
    assert not list(TESTS.glob("test_*.py")), "test files belong in a folder, not at tests/"
    for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = folder.relative_to(TESTS)
        assert (rel.parts[0] in NOT_MIRRORS | {TOP} and len(rel.parts) == 1) or \
            (PACKAGE / rel).is_dir(), f"tests/{rel.as_posix()} mirrors no folder of unimodal/"
        assert (folder / "__init__.py").is_file(), f"tests/{rel.as_posix()} needs an __init__.py"


def test_no_test_module_imports_another():
    """Shared helpers live in the fixture modules at tests/: a test module imported by its plain
    name only resolves from its own folder, so it breaks when the two files sit apart."""
    wrong = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}" for name in names
                      if name.split(".")[-1].startswith("test_")]
    assert not wrong, "move the shared helpers into a fixture module:\n  " + "\n  ".join(wrong)
