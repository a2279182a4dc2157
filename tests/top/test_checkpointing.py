"""No user file runs code when loaded: a planted pickle is refused by every loader, and the marker
file its unpickling would create never appears. Legitimate files still load."""

import json

import numpy as np
import pytest
import torch

from safe_loading_fixtures import payload, plant_payload
from unimodal.checkpointing import UnsafeFileError, load_torch_file
from unimodal.metrics.generation import load_reference
from unimodal.metrics.reconstruction import inception_weights_or_error


def test_load_torch_file_refuses_a_pickle_and_loads_tensors(tmp_path):
    marker = plant_payload(tmp_path / "x.pt", tmp_path / "ran")
    with pytest.raises(UnsafeFileError, match=r"my file .*x\.pt: refused to load"):
        load_torch_file(tmp_path / "x.pt", "my file")
    assert not marker.exists()
    torch.save({"w": torch.arange(3), "step": 4, "names": ["a"]}, tmp_path / "ok.pt")
    state = load_torch_file(tmp_path / "ok.pt", "my file")
    assert state["step"] == 4 and torch.equal(state["w"], torch.arange(3))


def test_fid_reference_refuses_pickles_in_pt_and_npz(tmp_path):
    marker = plant_payload(tmp_path / "ref.pt", tmp_path / "ran_pt",
                           wrap=lambda p: {"mu": np.zeros(2), "sigma": p})
    with pytest.raises(UnsafeFileError, match="reference"):
        load_reference(tmp_path / "ref.pt")
    npz_marker = tmp_path / "ran_npz"
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2), sigma=np.array([payload(npz_marker)], dtype=object))
    with pytest.raises(ValueError, match=r"ref\.npz: refused"):
        load_reference(tmp_path / "ref.npz")
    assert not marker.exists() and not npz_marker.exists()
    np.savez(tmp_path / "good.npz", mu=np.zeros(2), sigma=np.eye(2))
    assert load_reference(tmp_path / "good.npz").statistics is not None
    torch.save({"mu": torch.zeros(2), "sigma": torch.eye(2)}, tmp_path / "good.pt")
    assert load_reference(tmp_path / "good.pt").kind == "statistics"


def test_inception_weights_are_loaded_safely_and_handed_on_as_a_clean_copy(tmp_path):
    marker = plant_payload(tmp_path / "inception.pth", tmp_path / "ran")
    with pytest.raises(UnsafeFileError, match="inception_weights"):
        inception_weights_or_error(str(tmp_path / "inception.pth"))
    assert not marker.exists()
    state = {"conv.weight": torch.randn(2, 3), "fc.bias": torch.randn(4)}
    torch.save(state, tmp_path / "good.pth")
    copy = inception_weights_or_error(str(tmp_path / "good.pth"))
    assert copy != str(tmp_path / "good.pth")
    loaded = torch.load(copy, weights_only=True)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="state dict of tensors"):
        inception_weights_or_error(str(tmp_path / "list.pth"))


def test_tokenizer_resume_refuses_a_planted_training_state(tmp_path):
    from tokenizer_training_fixtures import tiny_args, train_main

    main = train_main()
    main(tiny_args(tmp_path, 2, "train.checkpoint_every=1", "train.eval_images=4"))
    ckpt = sorted((tmp_path / "checkpoints").glob("step_*"))[-1]
    state = torch.load(ckpt / "train_state.pt", weights_only=True)  # our own file loads safely
    assert state["step"] == 2
    marker = plant_payload(ckpt / "train_state.pt", tmp_path / "ran")
    with pytest.raises(UnsafeFileError, match="tokenizer training state"):
        main(tiny_args(tmp_path, 3) + ["--resume"])
    assert not marker.exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 2


def test_atomic_folder_survives_leftovers_of_a_killed_write(tmp_path):
    from unimodal.checkpointing import atomic_folder, latest_checkpoint

    final = tmp_path / "step_00000005"
    for leftover in (final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")):
        leftover.mkdir()
        (leftover / "junk").write_text("from a killed write")
    final.mkdir()
    (final / "a").write_text("old")
    with atomic_folder(final) as tmp:
        (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "step_00000005"]
    (tmp_path / "step_00000009.tmp").mkdir()  # an unfinished write is never the latest
    assert latest_checkpoint(tmp_path) == final


def test_run_in_out_dir_refuses_before_building_clears_with_overwrite_and_resumes(tmp_path):
    """The trainers' shared start: a taken out_dir fails before the trainer is built, overwrite
    clears the old run's files after it is built, a resume leaves them to `resume`."""
    from unimodal.checkpointing import run_in_out_dir
    from unimodal.config import ConfigError

    (tmp_path / "log.jsonl").write_text("another run")
    events = []

    def build():
        events.append(("build", (tmp_path / "log.jsonl").exists()))
        return "trainer"

    def train(trainer):
        events.append(("train", trainer, (tmp_path / "log.jsonl").exists()))
        return {"done": True}

    with pytest.raises(ConfigError, match="already holds a run"):
        run_in_out_dir(tmp_path, ["log.jsonl"], False, build, train)
    assert events == []
    assert run_in_out_dir(tmp_path, ["log.jsonl"], False, build, train,
                          resume=lambda t: events.append(("resume", t))) == {"done": True}
    assert events == [("build", True), ("resume", "trainer"), ("train", "trainer", True)]
    events.clear()
    run_in_out_dir(tmp_path, ["log.jsonl"], True, build, train)
    assert events == [("build", True), ("train", "trainer", False)]
