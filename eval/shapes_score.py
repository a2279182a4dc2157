"""Prompt following on the built-in shapes data, with no pretrained weights (our offline GenEval).

    python eval/shapes_score.py checkpoint=runs/shapes/export out=runs/shapes_score
    torchrun --nproc_per_node 8 eval/shapes_score.py checkpoint=... captions=2000 per_class=20

Samples one image per held-out caption (shapes scenes heldout_offset.. with data_seed; far
beyond any training split) and per_class images per class id, then the shapes checker finds
each object's colour, shape and position and scores them against the scene's generating
attributes: per attribute (colour, shape, position relation, object count) and whole prompt, also
split by the number of objects. The same held-out scenes rendered exactly (at the model's image
size) are scored too: the checker's ceiling, ~100%. Image i uses noise seed sampling.seed + i; PNGs are
kept in <out>/images (resumable, shardable like eval/fid.py). Writes shapes_score.json / .md and
shapes_samples.jsonl (expected vs detected per image).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from unimodal.cli import parse_config
from unimodal.data.shapes import NUM_CLASSES, render_sample
from unimodal.eval_sampling import (ImageJob, ShardedSamplingConfig, load_for_sampling,
                                    sample_shard, sampling_record, setup_device_and_shard)
from unimodal.metrics.report import grouped_table, write_report
from unimodal.metrics.shapes_checker import (ShapesAccuracy, detect_objects, score_detections,
                                             spec_for_class, spec_from_objects)
from unimodal.model.sampling import ImageRequest

COLUMNS = ["prompt", "color", "shape", "position", "count", "prompt_1_objects", "prompt_2_objects",
           "prompt_3_objects", "images"]


@dataclass
class ShapesScoreConfig(ShardedSamplingConfig):
    out: str = "runs/shapes_score"        # folder for images/ and the reports
    captions: int = 300                   # held-out captions to sample
    per_class: int = 4                    # images per class id; 0 = none
    heldout_offset: int = 1_000_000       # first held-out scene (training uses [0, data.num_samples))
    data_seed: int = 0                    # the shapes data seed

    def validate(self) -> None:
        super().validate()
        if self.captions < 0 or self.per_class < 0 or self.captions + self.per_class == 0:
            raise ValueError(f"captions={self.captions}, per_class={self.per_class}: each must "
                             "be >= 0, not both 0")


def build_jobs(images_dir: Path, captions: list[str], per_class: int) -> list[ImageJob]:
    jobs = [ImageJob(i, ImageRequest(caption=c), images_dir / f"caption_{i:05d}.png")
            for i, c in enumerate(captions)]
    for k in range(NUM_CLASSES * per_class):
        c, j = divmod(k, per_class)
        jobs.append(ImageJob(len(captions) + k, ImageRequest(class_id=c),
                             images_dir / f"class_{c:02d}_{j:03d}.png"))
    return jobs


def main(argv=None):
    args = parse_config(ShapesScoreConfig, argv, __doc__, __file__)
    cfg = args.sampling
    device, shard_rank, num_shards, distributed = setup_device_and_shard(args)
    model, tokenizer = load_for_sampling(args, device)
    if args.per_class and model.vocab.num_classes != NUM_CLASSES:
        raise ValueError(f"per_class={args.per_class}: the checkpoint has "
                         f"{model.vocab.num_classes} class tokens, the shapes data {NUM_CLASSES}; "
                         "pass per_class=0 for captions only")
    image_size = model.tok_cfg.image_size
    # The scene (objects, caption) does not depend on the size: render small here, exactly below.
    scenes = [render_sample(args.heldout_offset + i, args.data_seed, 32) for i in range(args.captions)]
    out = Path(args.out)
    record = {**sampling_record(args, model), "captions": args.captions,
              "per_class": args.per_class, "heldout_offset": args.heldout_offset,
              "data_seed": args.data_seed}
    jobs = build_jobs(out / "images", [s.caption for s in scenes], args.per_class)
    sample_shard(model, tokenizer, out, record, jobs, cfg, args.batch_size, shard_rank,
                 num_shards, distributed, args.overlap_decode)
    del model, tokenizer
    if shard_rank != 0:
        return None
    present = sum(job.path.exists() for job in jobs)
    if present < len(jobs):
        print(f"{present} of {len(jobs)} images present: scoring runs once every shard is done",
              flush=True)
        return None

    accuracy = {name: ShapesAccuracy() for name in
                ("caption", "class", "ground truth: caption", "ground truth: class")}
    records = []
    for job in tqdm(jobs, desc="check", unit="img", dynamic_ncols=True):
        with Image.open(job.path) as im:
            detected = detect_objects(np.asarray(im.convert("RGB")))
        if job.request.caption is not None:
            scene = scenes[job.index]
            spec = spec_from_objects(scene.objects)
            kind = "caption"
            truth = detect_objects(render_sample(args.heldout_offset + job.index, args.data_seed,
                                                 image_size).image)
            accuracy["ground truth: caption"].update(score_detections(truth, spec), spec)
            class_spec = spec_for_class(scene.class_id)
            accuracy["ground truth: class"].update(score_detections(truth, class_spec), class_spec)
        else:
            spec, kind = spec_for_class(job.request.class_id), "class"
        score = score_detections(detected, spec)
        accuracy[kind].update(score, spec)
        records.append({"file": job.path.name, "prompt": job.request.caption,
                        "class_id": job.request.class_id, "seed": cfg.image_seed(job.index),
                        "expected": asdict(spec), "detected": [asdict(d) for d in detected],
                        "color": score.color, "shape": score.shape, "position": score.position,
                        "count": score.count, "correct": score.correct})
    metrics = {name: acc.compute() for name, acc in accuracy.items() if acc.counts}
    with open(out / "shapes_samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    table = grouped_table(metrics, COLUMNS)
    settings = {"sampling": record, "image_size": image_size,
                "scoring": "per attribute pooled over objects/relations; prompt = all correct"}
    notes = ["class prompts ask for one object of the class's colour and shape (count free)",
             "ground truth rows: the held-out caption scenes rendered exactly (the checker's "
             "ceiling), scored against their caption and against their scene's class; so both "
             "rows count `captions` images, not the class requests"]
    report = write_report(out, "shapes_score", metrics, settings, notes,
                          "Prompt following on shapes (accuracy)", table)
    print(table, flush=True)
    print(f"wrote shapes_score.json, shapes_score.md, shapes_samples.jsonl and images/ to {out}",
          flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
