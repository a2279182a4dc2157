"""Class-conditional FID, Inception Score, precision and recall of a unified-model checkpoint.

    torchrun --nproc_per_node 8 eval/fid.py checkpoint=runs/imagenet/export out=runs/fid \\
        reference=/data/VIRTUAL_imagenet256_labeled.npz \\
        inception_weights=/weights/weights-inception-2015-12-05-6726825d.pth
    python eval/fid.py checkpoint=... num_classes=28 per_class=20 reference=shapes_ref/ ...
    python eval/fid.py checkpoint=... shard=3/8 sample_only=true       # one shard as its own job

Samples per_class images (default 50) of each of the first num_classes classes (default: all
the checkpoint's classes; 1000 x 50 = the 50K of the ADM protocol) as <out>/images/CCCC_JJJ.png.
Image i = class i // per_class uses noise seed sampling.seed + i, so shards over GPUs (i % W == rank)
and restarts give the same images; existing PNGs are kept. Then, on rank 0, FID / IS /
precision / recall through torch-fidelity against `reference`: a folder of images, an ADM
reference batch .npz (VIRTUAL_imagenet256_labeled.npz, what LlamaGen and VAR report against:
FID from its mu/sigma, precision/recall from its images), or mu/sigma statistics (.npz, .pt).
Writes <out>/fid.json and fid.md: the numbers with the sampling settings (CFG scale and schedule,
tau, T, seeds, checkpoint sha256) and the Inception file's sha256.
"""

from dataclasses import dataclass
from pathlib import Path

from unimodal.cli import parse_config
from unimodal.eval_sampling import (ImageJob, ShardedSamplingConfig, load_for_sampling,
                                    sample_shard, sampling_record, setup_device_and_shard)
from unimodal.metrics.generation import (generation_metrics, load_reference,
                                         require_inception_weights, weights_record)
from unimodal.metrics.report import markdown_table, write_report
from unimodal.model.sampling import ImageRequest


@dataclass
class FidConfig(ShardedSamplingConfig):
    out: str = "runs/fid"
    per_class: int = 50                   # images per class
    num_classes: int = 0                  # the first N classes; 0 = all
    reference: str = ""                   # image folder | ADM .npz | mu/sigma file
    reference_size: int = 0               # resize + centre-crop reference folder images (0 = as is)
    reference_features: bool = False      # FID against the reference's features even if it has mu/sigma
    inception_weights: str = ""           # torch-fidelity's weights-inception-2015-12-05-6726825d.pth
    metrics_batch_size: int = 64
    num_workers: int = 4                  # image loading for Inception
    isc_splits: int = 10
    feature_layer: str = "2048"           # Inception features for FID/PR: 2048 = standard; 768 | 192 | 64 for smoke tests
    sample_only: bool = False             # write the PNGs, skip the metrics

    def validate(self) -> None:
        super().validate()
        if self.per_class < 1:
            raise ValueError(f"per_class={self.per_class}: must be >= 1")
        if self.feature_layer not in ("2048", "768", "192", "64"):
            raise ValueError(f"feature_layer={self.feature_layer!r}: 2048, 768, 192 or 64")
        if not self.sample_only:  # fail before hours of sampling, not after
            require_inception_weights(self.inception_weights)
            if not self.reference:
                raise ValueError("reference= is required for metrics (or pass sample_only=true)")
            if not Path(self.reference).exists():
                raise FileNotFoundError(f"reference={self.reference}: not found")


def class_jobs(images_dir: Path, num_classes: int, per_class: int) -> list[ImageJob]:
    cw, jw = max(4, len(str(num_classes - 1))), max(3, len(str(per_class - 1)))
    return [ImageJob(i, ImageRequest(class_id=i // per_class),
                     images_dir / f"{i // per_class:0{cw}d}_{i % per_class:0{jw}d}.png")
            for i in range(num_classes * per_class)]


def main(argv=None):
    args = parse_config(FidConfig, argv, __doc__, __file__)
    cfg = args.sampling
    device, shard_rank, num_shards, distributed = setup_device_and_shard(args)
    model, tokenizer = load_for_sampling(args, device)
    available = model.vocab.num_classes
    num_classes = args.num_classes or available
    if not 1 <= num_classes <= available:
        raise ValueError(f"num_classes={args.num_classes}: the checkpoint has {available} classes")
    out = Path(args.out)
    record = {**sampling_record(args, model), "num_classes": num_classes,
              "per_class": args.per_class}
    jobs = class_jobs(out / "images", num_classes, args.per_class)
    written, mine = sample_shard(model, tokenizer, out, record, jobs, cfg, args.batch_size,
                                 shard_rank, num_shards, distributed, args.overlap_decode)
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
