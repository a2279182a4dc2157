"""Tokenizer reconstruction metrics: PSNR, SSIM, codebook usage, and rFID with a local Inception file.

    python eval/recon.py tokenizer=runs/quickstart/tokenizer/tokenizer data.source=shapes
    python eval/recon.py tokenizer=... data.source=folder data.path=/data/imagenet/val \
        data.image_size=256 split=train inception_weights=/weights/weights-inception-2015-12-05-6726825d.pth
Writes recon_metrics.json / .md, reconstructions.png and step_diagnostics.png under out_dir, and
every image as a PNG in original/ and reconstruction/ unless save_images=false (rFID needs them).
"""

from unimodal.cli import parse_config
from unimodal.metrics.recon_eval import ReconEvalConfig, evaluate_reconstruction


def main(argv=None):
    cfg = parse_config(ReconEvalConfig, argv, __doc__, __file__)
    metrics = evaluate_reconstruction(cfg)
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in metrics.items()), flush=True)
    pngs = ("reconstructions.png, step_diagnostics.png"
            + (", original/ and reconstruction/" if cfg.save_images or cfg.inception_weights else ""))
    print(f"wrote recon_metrics.json, recon_metrics.md, {pngs} to {cfg.out_dir}", flush=True)
    return metrics


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
