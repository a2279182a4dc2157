"""Tokenizer reconstruction evaluation (unimodal/metrics/recon_eval.py): the metrics equal a hand
re-computation on the same images and seeds (cut at max_images mid-batch), codebook usage counts
the codes used, the config refuses what cannot work, and eval/recon.py writes its reports."""

import json

import pytest
import torch

from unified_fixtures import load_script, tiny_rdpm_tokenizer
from unimodal.config import ConfigError
from unimodal.data.image_sources import ImageDataConfig, build_image_dataset
from unimodal.metrics.recon_eval import ReconEvalConfig, evaluate_reconstruction
from unimodal.metrics.reconstruction import psnr_per_image, ssim_per_image
from unimodal.tokenizer.encode_shards import noise_seed
from unimodal.tokenizer.rdpm_tokenizer import save_tokenizer


def tiny_tokenizer(**kw):
    return tiny_rdpm_tokenizer(**{"latent_dim": 4, "code_maps": 5, **kw})


def test_metrics_equal_a_hand_recomputation(tmp_path):
    tok = tiny_tokenizer()
    save_tokenizer(tok, tmp_path / "tok")
    data = ImageDataConfig(source="shapes", image_size=32, heldout_samples=8, num_workers=0)
    cfg = ReconEvalConfig(tokenizer=str(tmp_path / "tok"), out_dir=str(tmp_path / "out"), data=data,
                          max_images=5, batch_size=4, seed=3, device="cpu", save_images=False)
    metrics = evaluate_reconstruction(cfg)
    dataset = build_image_dataset(data, "heldout")
    items = [dataset[i] for i in range(5)]                      # 4 + the first of the next batch
    images = torch.stack([it["image"] for it in items])
    seeds = [noise_seed(3, it["key"]) for it in items]
    with torch.no_grad():
        codes = tok.encode(images, seeds)
        recon = tok.decode(codes).float().clamp(-1, 1)
    assert metrics["images"] == 5
    assert metrics["psnr"] == pytest.approx(psnr_per_image(images, recon).mean().item(), rel=1e-5)
    assert metrics["ssim"] == pytest.approx(ssim_per_image(images, recon).mean().item(), rel=1e-5)
    assert metrics["codebook_usage"] == pytest.approx(codes.unique().numel() / 64)
    assert metrics["gain_mean"] == pytest.approx(1.0) and "rfid" not in metrics
    saved = json.loads((tmp_path / "out" / "recon_metrics.json").read_text())
    assert saved["metrics"]["psnr"] == metrics["psnr"] and saved["config"]["max_images"] == 5
    assert len(saved["per_step"]["prefix_psnr"]) == 5
    # per-step values are means of batch means (StepDiagnostics): batches of 4 and 1 weigh alike
    per_image = psnr_per_image(images, recon)
    batch_means = (per_image[:4].mean() + per_image[4]) / 2
    assert saved["per_step"]["prefix_psnr"][-1] == pytest.approx(batch_means.item(), rel=1e-4)
    assert (tmp_path / "out" / "reconstructions.png").is_file()


def test_config_refuses_what_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match=r"^tokenizer='': give the tokenizer folder"):
        ReconEvalConfig().validate()
    with pytest.raises(ConfigError, match=r"tokenizer='.*nowhere'"):
        ReconEvalConfig(tokenizer=str(tmp_path / "nowhere")).validate()
    with pytest.raises(FileNotFoundError, match=r"^inception_weights=.*none\.pth: file not found"):
        ReconEvalConfig(tokenizer=str(tmp_path), inception_weights=str(tmp_path / "none.pth")).validate()
    with pytest.raises(ConfigError, match=r"data\.source='imagenet'"):
        ReconEvalConfig(tokenizer=str(tmp_path), data=ImageDataConfig(source="imagenet")).validate()
    ReconEvalConfig(tokenizer=str(tmp_path)).validate()


def test_recon_script_reports_the_checker_ceiling_and_per_step_table(tmp_path, capsys):
    tok = tiny_tokenizer(image_size=64, channel_mult=[1, 2, 2, 4])
    save_tokenizer(tok, tmp_path / "tok")
    metrics = load_script("eval/recon.py").main(
        [f"tokenizer={tmp_path / 'tok'}", f"out_dir={tmp_path / 'recon'}", "data.source=shapes",
         "data.image_size=64", "data.heldout_samples=8", "max_images=8", "batch_size=4",
         "save_images=false", "device=cpu"])
    assert 0.0 <= metrics["checker_prompt"] <= 1.0 and "checker_prompt_3_objects" in metrics
    report = json.loads((tmp_path / "recon" / "recon_metrics.json").read_text())
    assert len(report["per_step"]["prefix_psnr"]) == 5
    assert (tmp_path / "recon" / "step_diagnostics.png").is_file()
    assert "| prefix_psnr |" in (tmp_path / "recon" / "recon_metrics.md").read_text()
    # save_images=false: no per-image folders, and the closing line does not promise them.
    assert not (tmp_path / "recon" / "original").exists()
    assert "original/" not in capsys.readouterr().out
