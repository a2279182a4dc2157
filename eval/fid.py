"""Class-conditional FID, Inception Score, precision and recall of a unified-model checkpoint.

    torchrun --nproc_per_node 8 eval/fid.py --checkpoint runs/imagenet/export --out runs/fid \
        --reference /data/VIRTUAL_imagenet256_labeled.npz \
        --inception-weights /weights/weights-inception-2015-12-05-6726825d.pth
    python eval/fid.py --checkpoint ... --num-classes 28 --per-class 20 --reference shapes_ref/ ...
    python eval/fid.py --checkpoint ... --shard 3/8 --sample-only       # one shard as its own job

Samples --per-class images (default 50) of each of the first --num-classes classes (default: all
the checkpoint's classes; 1000 x 50 = the 50K of the ADM protocol) as <out>/images/CCCC_JJJ.png.
Image i = class i // per_class uses noise seed --seed + i, so shards over GPUs (i % W == rank)
and restarts give the same images; existing PNGs are kept. Then, on rank 0, FID / IS /
precision / recall through torch-fidelity against --reference: a folder of images, an ADM
reference batch .npz (VIRTUAL_imagenet256_labeled.npz, what LlamaGen and VAR report against:
FID from its mu/sigma, precision/recall from its images), or mu/sigma statistics (.npz, .pt).
Writes <out>/fid.json and fid.md: the numbers with the sampling settings (CFG scale and schedule,
tau, T, seeds, checkpoint sha256) and the Inception file's sha256.
"""

import argparse
from pathlib import Path


from unimodal.eval_sampling import (ImageJob, add_sampling_args, load_for_sampling, sample_shard,
                                    sampling_config, sampling_record, setup_device_and_shard)
from unimodal.metrics.generation import (generation_metrics, load_reference,
                                         require_inception_weights, weights_record)
from unimodal.metrics.report import markdown_table, write_report
from unimodal.model.sampling import ImageRequest


def class_jobs(images_dir: Path, num_classes: int, per_class: int) -> list[ImageJob]:
    cw, jw = max(4, len(str(num_classes - 1))), max(3, len(str(per_class - 1)))
    return [ImageJob(i, ImageRequest(class_id=i // per_class),
                     images_dir / f"{i // per_class:0{cw}d}_{i % per_class:0{jw}d}.png")
            for i in range(num_classes * per_class)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_sampling_args(parser)
    parser.add_argument("--out", default="runs/fid")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--num-classes", type=int, default=0, help="first N classes; 0 = all")
    parser.add_argument("--reference", default=None, help="image folder | ADM .npz | mu/sigma file")
    parser.add_argument("--reference-size", type=int, default=0,
                        help="resize + centre-crop reference folder images to this size (0 = as is)")
    parser.add_argument("--reference-features", action="store_true",
                        help="FID against features of the reference images even if it has mu/sigma")
    parser.add_argument("--inception-weights", default=None,
                        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth")
    parser.add_argument("--metrics-batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=4, help="image loading for Inception")
    parser.add_argument("--isc-splits", type=int, default=10)
    parser.add_argument("--feature-layer", default="2048", choices=["2048", "768", "192", "64"],
                        help="Inception features for FID/PR: 2048 = standard; others for smoke tests")
    parser.add_argument("--sample-only", action="store_true", help="write the PNGs, skip metrics")
    args = parser.parse_args(argv)
    if not args.sample_only:  # fail before hours of sampling, not after
        require_inception_weights(args.inception_weights)
        if not args.reference:
            raise ValueError("--reference is required for metrics (or pass --sample-only)")
        if not Path(args.reference).exists():
            raise FileNotFoundError(f"--reference {args.reference}: not found")
    if args.per_class < 1:
        raise ValueError(f"--per-class {args.per_class}: must be >= 1")
    cfg = sampling_config(args)
    device, shard_rank, num_shards, distributed = setup_device_and_shard(args)
    model, tokenizer = load_for_sampling(args.checkpoint, device, args.compile)
    available = model.vocab.num_classes
    num_classes = args.num_classes or available
    if not 1 <= num_classes <= available:
        raise ValueError(f"--num-classes {args.num_classes}: the checkpoint has {available} classes")
    out = Path(args.out)
    record = {**sampling_record(cfg, model, args.checkpoint), "num_classes": num_classes,
              "per_class": args.per_class}
    jobs = class_jobs(out / "images", num_classes, args.per_class)
    written, mine = sample_shard(model, tokenizer, out, record, jobs, cfg, args.batch_size,
                                 shard_rank, num_shards, distributed)
    del model, tokenizer
    if shard_rank != 0 or args.sample_only:
        print(f"shard {shard_rank}/{num_shards}: wrote {written}, kept {mine - written}",
              flush=True)
        return None
    present = sum(job.path.exists() for job in jobs)
    if present < len(jobs):
        print(f"{present} of {len(jobs)} images present: metrics run once every shard is done "
              "(rerun this command when they are)", flush=True)
        return None
    reference = load_reference(args.reference, args.reference_size)
    metrics = generation_metrics(out / "images", reference, args.inception_weights, device,
                                 args.metrics_batch_size, args.num_workers,
                                 use_reference_statistics=not args.reference_features,
                                 isc_splits=args.isc_splits,
                                 save_generated_statistics=out / "generated_fid_stats.npz",
                                 feature_layer=args.feature_layer)
    import torch_fidelity

    settings = {"sampling": record, "images": len(jobs), "shards": num_shards,
                "reference": {"path": str(args.reference), "kind": metrics.pop("reference_kind"),
                              "fid_against": metrics.pop("fid_reference")},
                "inception_weights": weights_record(args.inception_weights),
                "torch_fidelity": torch_fidelity.__version__, "isc_splits": args.isc_splits,
                "feature_layer": args.feature_layer,
                "precision_recall": f"k = 3 nearest neighbours, Inception {args.feature_layer}-d features"}
    notes = [] if metrics["precision"] is not None else [
        "precision/recall need reference images; this reference holds only statistics"]
    if args.feature_layer != "2048":
        notes.append(f"FID on the {args.feature_layer}-d Inception features: not comparable to "
                     "published (2048-d) FID")
    report = write_report(out, "fid", metrics, settings, notes, "Class-conditional generation")
    print(markdown_table(metrics), flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
