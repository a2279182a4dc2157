"""The pretraining loop reads no device value on the host between log steps (torchtitan's rule):
every read the package makes (.item(), .tolist(), .cpu(), .numpy(), bool/int/float of a tensor)
is counted per optimizer step, and steps that neither log nor save must have none.

On CPU there is no CUDA sync to catch, so the reads themselves are counted, by whom they are
called: the package's code, unless unimodal/data is on the call stack (the loader's tensors live
on the host, where reading them costs nothing). Reads while logging, checking the non-finite
guard, saving or exporting are expected and only counted as a whole. DeepSpeed's own reads
inside engine.step() (its overflow check) are not ours to remove and are not counted. The model's
forward reads nothing either (unified.py picks loss positions by index tensors of host-known
sizes). Not seen here: ops with data-dependent output sizes (boolean indexing, nonzero,
masked_select), which also wait for the GPU; `test_a_training_step_makes_the_host_wait_for_nothing`
(tests/model/test_unified.py and tests/model/objectives/test_objectives.py) looks for those in
forward and backward.
"""

import json
import sys
from pathlib import Path

from process_fixtures import clean_env, run_warm

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


def _from_the_loader(frame, host_side: Path) -> bool:
    """Whether unimodal/data is on the call stack: the loader builds documents from host tensors
    (through the objectives' document builders), where a read costs nothing."""
    while frame is not None:
        if host_side in Path(frame.f_code.co_filename).parents:
            return True
        frame = frame.f_back
    return False


def count_host_reads(config: str, out: str, *overrides: str) -> None:
    """Child process: run the tiny pretraining with the reads counted; print
    `HOST_READS {"loop": {step: [caller, ...]}, "allowed": n, "forwards": {step: n}}`: the reads
    in the loop keyed by the optimizer step being computed, the count of those made while logging,
    checking the guard, saving or exporting (where reads are expected), and the model forwards
    per step (so that an empty `loop` means the counter watched the steps and saw no read)."""
    import torch

    import unimodal
    from unimodal import distributed as D
    from unimodal.config import load_config
    from unimodal.model.unified import UnifiedModel
    from unimodal.pretraining.config import PretrainConfig
    from unimodal.pretraining.trainer import Pretrainer

    cfg = load_config(PretrainConfig, config,
                      [f"train.out_dir={out}", "train.tensorboard=false", *overrides])
    trainer = Pretrainer(cfg)
    package = Path(unimodal.__file__).parent
    host_side = package / "data"
    loop: dict[int, list[str]] = {}
    forwards: dict[int, int] = {}
    allowed = [0]
    inside_allowed = [0]

    def counted(original):
        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            caller = Path(frame.f_code.co_filename)
            if package in caller.parents and not _from_the_loader(frame, host_side):
                if inside_allowed[0]:
                    allowed[0] += 1
                else:
                    loop.setdefault(trainer.step + 1, []).append(
                        f"{caller.relative_to(package.parent)}:{frame.f_lineno}")
            return original(self, *args, **kwargs)
        return read

    def allowing(method):
        def call(*args, **kwargs):
            inside_allowed[0] += 1
            try:
                return method(*args, **kwargs)
            finally:
                inside_allowed[0] -= 1
        return call

    model_forward = UnifiedModel.forward

    def forward(self, batch):
        forwards[trainer.step + 1] = forwards.get(trainer.step + 1, 0) + 1
        return model_forward(self, batch)

    UnifiedModel.forward = forward
    for name in ("_log", "save_checkpoint", "export"):
        setattr(trainer, name, allowing(getattr(trainer, name)))
    trainer.guard.check_weights = allowing(trainer.guard.check_weights)
    for name in READS:
        setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    try:
        trainer.run()
    finally:
        D.shutdown()
    print("HOST_READS " + json.dumps({"loop": loop, "allowed": allowed[0], "forwards": forwards}))


def test_no_host_reads_between_log_steps(tiny_config, tmp_path):
    # This folder for test_trainer_host_syncs, tests/ for the fixture modules it imports.
    code = ("import sys; sys.path[:0] = %r; from test_trainer_host_syncs import "
            "count_host_reads; count_host_reads(*sys.argv[1:])"
            % [str(Path(__file__).parent), str(Path(__file__).parents[1])])
    overrides = ["train.steps=6", "train.log_every=3", "train.checkpoint_every=3",
                 "train.gradient_accumulation=2"]
    done = run_warm(["-c", code, str(tiny_config), str(tmp_path / "run"), *overrides],
                    {**clean_env(), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HOST_READS "))
    counts = json.loads(line[len("HOST_READS "):])
    # Nothing between log steps reads: not the model's forward (unimodal/model/), nor the
    # trainer, the guard, EMA or the FLOP counts.
    assert counts["loop"] == {}, f"host reads per step: {counts['loop']}"
    # The counter watched every step (2 micro-batches each) and saw the reads of log steps.
    assert counts["forwards"] == {str(step): 2 for step in range(1, 7)}, counts["forwards"]
    assert counts["allowed"] > 0  # losses and FLOP counts
