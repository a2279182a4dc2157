"""Paint images with a unified-model checkpoint: prompts or class ids in, PNGs and a grid out.

    python eval/sample.py --checkpoint runs/quickstart/unified/export --prompt "a red circle" \
        --prompt "a blue square above a green triangle" --out samples/
    python eval/sample.py --checkpoint ... --prompts-file prompts.txt --images-per-prompt 4
    python eval/sample.py --checkpoint ... --class-id 3 --class-id 17 --cfg-scale 4 --temperature 1

Every input is checked before sampling starts; files are written to a scratch folder and moved
into --out only when all images are done, so a failed run leaves no partial output.
"""

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from unimodal.distributed import pick_device
from unimodal.images import save_grid, save_png
from unimodal.model.export import load_unified
from unimodal.model.sampling import (ImageRequest, ImageSamplingConfig, compile_for_sampling,
                                     check_batch_size, generate_images, max_prompt_tokens,
                                     validate_requests)


def read_requests(args) -> list[ImageRequest]:
    prompts = list(args.prompt)
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise FileNotFoundError(f"--prompts-file {path}: not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"--prompts-file {path}: not UTF-8 text (byte {err.start})") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    requests = [ImageRequest(caption=p) for p in prompts]
    requests += [ImageRequest(class_id=c) for c in args.class_id]
    return [r for r in requests for _ in range(args.images_per_prompt)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="consolidated unified-model folder")
    parser.add_argument("--prompt", action="append", default=[])
    parser.add_argument("--prompts-file", default=None, help="one prompt per line")
    parser.add_argument("--class-id", type=int, action="append", default=[])
    parser.add_argument("--images-per-prompt", type=int, default=1)
    parser.add_argument("--out", default="samples")
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--cfg-schedule", default="linear", choices=["linear", "constant"])
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile backbone and decoder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what --out holds (without it a non-empty --out is refused)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"--out {out} is not empty: old and new images would mix; pass "
                              "--overwrite to replace its contents, or another --out")
    requests = read_requests(args)
    if not Path(args.checkpoint).is_dir():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: folder not found")
    cfg = ImageSamplingConfig(args.cfg_scale, args.cfg_schedule, args.temperature, args.top_k,
                              args.seed)
    cfg.validate()
    check_batch_size(args.batch_size, "--batch-size")
    device = pick_device(args.device)
    model, tokenizer = load_unified(args.checkpoint, device,
                                    torch.bfloat16 if device.type == "cuda" else torch.float32)
    if args.compile:
        compile_for_sampling(model, tokenizer)
    validate_requests(requests, model.vocab, max_prompt_tokens(model))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as scratch:
        with tqdm(total=len(requests), desc="sample", unit="img") as bar:
            images = generate_images(model, tokenizer, requests, cfg, args.batch_size, bar)
        names = []
        for i, (img, req) in enumerate(zip(images, requests)):
            name = f"{i:05d}.png"
            save_png(img, Path(scratch) / name)
            names.append({"file": name, "prompt": req.caption, "class_id": req.class_id,
                          "seed": cfg.seed + i})
        save_grid(images, Path(scratch) / "grid.png", nrow=min(8, len(images)))
        (Path(scratch) / "samples.json").write_text(json.dumps(
            {"checkpoint": str(args.checkpoint), "sampling": vars(cfg), "images": names}, indent=2))
        # The scratch folder sits beside --out (same file system): each file lands by a rename,
        # and with --overwrite the old contents go only once all new files exist.
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        for f in Path(scratch).iterdir():
            os.replace(f, out / f.name)
    print(f"wrote {len(requests)} images and grid.png to {out}", flush=True)
    return images


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
