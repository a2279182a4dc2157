"""CLIP score of a unified-model checkpoint on a prompts file (or of a folder of images).

    torchrun --nproc_per_node 8 eval/clip_score.py checkpoint=runs/t2i/export \\
        prompts=captions_val2014.json max_prompts=30000 out=runs/clip \\
        clip_weights=/weights/open_clip_vit_b_32.bin
    python eval/clip_score.py images=samples/ prompts=prompts.txt clip_weights=...

Prompt i (one per line, a JSON list, or COCO captions JSON: one caption per image) becomes
<out>/images/NNNNN.png with noise seed sampling.seed + i (sharded over GPUs, existing files kept),
then rank 0 scores (image i, prompt_prefix + prompt i) with open_clip (clip_model, default
ViT-B-32; weights from clip_weights). With images=FOLDER, the files NNNNN.png of that folder are
scored instead. Reports `cosine_mean` (mean cosine, the GigaGAN/LlamaGen number) and
`clip_score_100` (mean of 100 x max(cosine, 0), the torchmetrics number) in clip_score.json/.md;
per-prompt cosines in clip_per_prompt.jsonl.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from unimodal.cli import parse_config
from unimodal.distributed import pick_device
from unimodal.eval_sampling import (ImageJob, ShardedSamplingConfig, load_for_sampling,
                                    sample_shard, sampling_record, setup_device_and_shard)
from unimodal.data.prompt_files import read_prompts
from unimodal.metrics.clip_score import (DEFAULT_MODEL, DEFAULT_PREFIX, ClipScorer,
                                         clip_score_summary, clip_weights_or_error, score_files)
from unimodal.metrics.generation import weights_record
from unimodal.metrics.report import markdown_table, write_report
from unimodal.model.sampling import ImageRequest


@dataclass
class ClipScoreConfig(ShardedSamplingConfig):
    images: str = ""                      # score this folder's NNNNN.png instead of sampling
    prompts: str = ""                     # prompts file: .txt lines, JSON list, COCO captions
    max_prompts: int = 0                  # the first N prompts; 0 = all
    out: str = "runs/clip_score"
    clip_model: str = DEFAULT_MODEL       # open_clip architecture name
    clip_weights: str = ""                # local open_clip checkpoint file
    clip_model_config: str = ""           # open_clip architecture JSON to register (its stem is the name)
    prompt_prefix: str = DEFAULT_PREFIX
    clip_batch_size: int = 64

    def validate(self) -> None:
        super().validate()
        if bool(self.checkpoint) == bool(self.images):
            raise ValueError("give exactly one of checkpoint= (sample, then score) or images= (score)")
        if not self.prompts:
            raise ValueError("prompts= is required: a prompts file")
        clip_weights_or_error(self.clip_weights, self.clip_model)


def main(argv=None):
    args = parse_config(ClipScoreConfig, argv, __doc__, __file__)
    prompts = read_prompts(args.prompts, args.max_prompts)
    out = Path(args.out)
    settings = {"prompts_file": str(args.prompts), "prompts": len(prompts),
                "prompt_prefix": args.prompt_prefix, "clip_model": args.clip_model,
                "clip_weights": weights_record(args.clip_weights),
                "metrics": {"cosine_mean": "mean cosine(image, text)",
                            "clip_score_100": "mean of 100 x max(cosine, 0)"}}
    if args.images:
        device = pick_device(args.device)
        images_dir = Path(args.images)
        settings["images"] = str(images_dir)
    else:
        cfg = args.sampling
        device, shard_rank, num_shards, distributed = setup_device_and_shard(args)
        model, tokenizer = load_for_sampling(args, device)
        record = {**sampling_record(args, model), "prompts_file": str(args.prompts),
                  "prompts": len(prompts)}
        images_dir = out / "images"
        jobs = [ImageJob(i, ImageRequest(caption=p), images_dir / f"{i:05d}.png")
                for i, p in enumerate(prompts)]
        sample_shard(model, tokenizer, out, record, jobs, cfg, args.batch_size, shard_rank,
                     num_shards, distributed, args.overlap_decode)
        del model, tokenizer
        if shard_rank != 0:
            return None
        settings["sampling"] = record
    files = [images_dir / f"{i:05d}.png" for i in range(len(prompts))]
    missing = [f for f in files if not f.is_file()]
    if missing and args.images:
        raise FileNotFoundError(f"images={images_dir}: {len(missing)} of {len(files)} images "
                                f"missing (first: {missing[0].name}; image i is NNNNN.png)")
    if missing:
        print(f"{len(files) - len(missing)} of {len(files)} images present: scoring runs once "
              "every shard is done (rerun this command when they are)", flush=True)
        return None
    scorer = ClipScorer(args.clip_weights, args.clip_model, device, args.prompt_prefix,
                        args.clip_model_config or None)
    with tqdm(total=len(files), desc="clip", unit="img", dynamic_ncols=True) as bar:
        cosines = score_files(scorer, files, prompts, args.clip_batch_size, bar)
    metrics = clip_score_summary(cosines)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "clip_per_prompt.jsonl", "w") as f:
        for file, prompt, cos in zip(files, prompts, cosines.tolist()):
            f.write(json.dumps({"file": file.name, "prompt": prompt, "cosine": cos}) + "\n")
    report = write_report(out, "clip_score", metrics, settings, title="CLIP score")
    print(markdown_table(metrics), flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
