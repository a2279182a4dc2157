"""Sample a unified-model checkpoint: images (prompts or class ids in, PNGs and a grid out) or text.

    python eval/sample.py --checkpoint runs/quickstart/pretrain/export --prompt "a red circle" \
        --prompt "a blue square above a green triangle" --out runs/samples
    python eval/sample.py --checkpoint ... --prompts-file prompts.txt --images-per-prompt 4
    python eval/sample.py --checkpoint ... --class-id 3 --class-id 17 --cfg-scale 4 --temperature 1
    python eval/sample.py --checkpoint ... --modality text --prompt "the red circle is" \
        --max-new-tokens 40 --temperature 0.8 --top-p 0.9      (streams to the terminal)
    python eval/sample.py --checkpoint ... --modality text --prompts-file p.txt --out texts.json

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
from unimodal.eval_sampling import add_image_sampling_args, image_sampling_config
from unimodal.model.sampling import (ImageRequest, TextSamplingConfig,
                                     check_batch_size, compile_for_sampling, generate_images,
                                     generate_text, max_prompt_tokens, validate_requests)


DEFAULT_OUT = "runs/samples"


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


def sample_text(args) -> list[dict]:
    """Text continuations: streamed to stdout for one prompt, printed, or written as JSON."""
    if args.class_id:
        raise ValueError("--class-id is for images; --modality text takes --prompt/--prompts-file")
    prompts = [r.caption for r in read_requests(args)]
    if not prompts:
        raise ValueError("nothing to sample: give --prompt or --prompts-file")
    cfg = TextSamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    cfg.validate()
    to_file = args.out is not None
    if to_file and Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"--out {args.out} exists; pass --overwrite to replace it")
    model, _ = load_unified(args.checkpoint, pick_device(args.device))
    shown = [""]

    def stream(texts: list[str]) -> None:  # print only what is new since the last token
        new = texts[0][len(shown[0]):] if texts[0].startswith(shown[0]) else "\n" + texts[0]
        print(new, end="", flush=True)
        shown[0] = texts[0]

    streaming = len(prompts) == 1 and not to_file
    if streaming:
        print(prompts[0], end="", flush=True)
    texts = generate_text(model, prompts, cfg, on_step=stream if streaming else None)
    results = [{"prompt": p, "text": t} for p, t in zip(prompts, texts)]
    if streaming:
        print(flush=True)
    elif to_file:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"checkpoint": str(args.checkpoint),
                                              "sampling": vars(cfg), "texts": results}, indent=2))
        print(f"wrote {len(results)} continuations to {args.out}", flush=True)
    else:
        for r in results:
            print(f"{r['prompt']}{r['text']}", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="consolidated unified-model folder")
    parser.add_argument("--prompt", action="append", default=[])
    parser.add_argument("--prompts-file", default=None, help="one prompt per line")
    parser.add_argument("--class-id", type=int, action="append", default=[])
    parser.add_argument("--images-per-prompt", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help=f"image folder (default {DEFAULT_OUT}), or for --modality text a "
                             ".json file (default: stdout)")
    add_image_sampling_args(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile backbone and decoder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what --out holds (without it a non-empty --out is refused)")
    parser.add_argument("--modality", choices=["image", "text"], default="image",
                        help="text: continue each prompt with text (stdout, or --out FILE.json)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="text only")
    parser.add_argument("--top-p", type=float, default=1.0, help="text only")
    args = parser.parse_args(argv)
    if args.modality == "text":
        return sample_text(args)
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"--out {out} is not empty: old and new images would mix; pass "
                              "--overwrite to replace its contents, or another --out")
    requests = read_requests(args)
    if not Path(args.checkpoint).is_dir():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: folder not found")
    cfg = image_sampling_config(args)
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
                          "seed": cfg.image_seed(i)})
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
