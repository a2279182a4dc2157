"""The token image objectives end to end through the scripts: a T = 1 tokenizer, training with
train/pretrain.py under DeepSpeed, the export, and eval/sample.py drawing from it."""

import math

import pytest

from mixture_fixtures import code_shards, text_shards
from process_fixtures import three_step_run
from unified_fixtures import load_script, make_assets

pytestmark = pytest.mark.slow  # end-to-end training runs (tests/conftest.py starts them first)


@pytest.mark.parametrize("objective", ["next_token", "masked"])
def test_token_objectives_train_export_and_sample_through_the_scripts(tmp_path, objective):
    """A T = 1 tokenizer, `model.image_objective=<objective>`: train/pretrain.py trains and
    exports, eval/sample.py draws PNGs from the export (the objective travels with it)."""
    text_model, tok_dir, _, vocab, _ = make_assets(tmp_path / "assets", code_maps=1)
    text = text_shards(tmp_path / "text", "text", 1, 30, vocab)
    c2i = code_shards(tmp_path / "c2i", "c2i", 1, 20, "class_images", code_maps=1)
    t2i = code_shards(tmp_path / "t2i", "t2i", 1, 20, "caption_images", code_maps=1)
    out = tmp_path / "run"
    log = three_step_run(
        tmp_path / "uni_t1.yaml", text_model, tok_dir,
        [("text", "text", text, 0.3), ("c2i", "class_images", c2i, 0.4),
         ("t2i", "caption_images", t2i, 0.3)], out, image_objective=objective)
    assert all(math.isfinite(r["image_loss"]) and r["image_loss"] > 0 for r in log)
    sample = load_script("eval/sample.py").main
    pngs = tmp_path / "samples"
    sample([f"checkpoint={out / 'export'}", f"out={pngs}", "device=cpu",
            "prompts=[a red circle]", "class_ids=[3]", "sampling.mask_steps=2"])
    assert len(list(pngs.glob("0*.png"))) == 2 and (pngs / "grid.png").is_file()
    from unimodal.model.export import load_unified

    model, _ = load_unified(out / "export")
    assert model.cfg.image_objective == objective and model.objective.name == objective
