"""tokenizers/train_rdpm.py at CPU-test size: its main, and the arguments of a tiny image, audio or
video run. Used by tests/tokenizer/test_training.py, tests/tokenizer/test_training_modalities.py,
tests/top/test_checkpointing.py and tests/data/test_image_sources.py."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_main():
    spec = importlib.util.spec_from_file_location("train_rdpm", ROOT / "tokenizers/train_rdpm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def tiny_args(out, steps, *extra):
    return ["--config", str(ROOT / "configs/rdpm_tiny.yaml"), f"train.out_dir={out}",
            f"train.steps={steps}", "model.image_size=32", "data.image_size=32",
            "model.base_channels=16", "model.channel_mult=[1,2,2]", "model.codebook_size=64",
            "model.code_maps=4", "model.dead_code_after=5", "train.batch_size=8", "train.log_every=10",
            "train.checkpoint_every=1000", "train.eval_images=16", "data.num_workers=0",
            "data.num_samples=400", "data.heldout_samples=16", "optim.lr=2e-3",
            "optim.warmup_steps=5", "optim.schedule=constant",  # the quickstart's cosine
            # would decay within the tests' few steps
            "loss.gan_start=250", "loss.disc_channels=8",
            "train.threads=0", *extra]  # threads=0: keep the test's torch threads (conftest.py)


def _tiny_args(config: str, out, steps, overrides: list[str], extra) -> list[str]:
    # threads=0: keep the test's torch threads (conftest.py)
    return ["--config", str(ROOT / "configs" / config), f"train.out_dir={out}",
            f"train.steps={steps}", "model.codebook_size=64", "model.dead_code_after=5",
            "optim.lr=3e-3", "train.threads=0", *overrides, *extra]


def tiny_audio_args(out, steps, *extra):
    """The audio tokenizer at CPU-test size: 0.2 s clips (10 codes of 320 samples), K = 64, T = 4."""
    return _tiny_args("rdpm_audio_tiny.yaml", out, steps,
                      ["model.clip_samples=3200", "model.base_channels=8", "train.log_every=5",
                       "train.eval_images=8", "data.heldout_samples=8", "data.num_samples=400"],
                      extra)


def tiny_video_args(out, steps, *extra):
    """The video tokenizer at CPU-test size: 8 frames at 32 px, grid (4, 8, 8), K = 64, T = 4."""
    return _tiny_args("rdpm_video_tiny.yaml", out, steps,
                      ["model.base_channels=8", "train.batch_size=4", "train.log_every=4",
                       "train.eval_images=4", "data.heldout_samples=4", "data.num_samples=200"],
                      extra)


def assert_resume_is_exact(args, root: Path, steps: int, *extra) -> None:
    """A run of `steps` and one stopped half-way (a checkpoint there) then resumed end with
    bit-equal weights. `args` is tiny_args, tiny_audio_args or tiny_video_args."""
    from safetensors.torch import load_file
    import torch

    main = train_main()
    main(args(root / "straight", steps, *extra))
    main(args(root / "split", steps // 2, *extra))
    main(args(root / "split", steps, *extra) + ["--resume"])
    a = load_file(str(root / "straight/tokenizer/tokenizer.safetensors"))
    b = load_file(str(root / "split/tokenizer/tokenizer.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
