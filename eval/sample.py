"""Sample a unified-model checkpoint: images (prompts or class ids in, PNGs and a grid out) or text.

    python eval/sample.py checkpoint=runs/quickstart/pretrain/export out=runs/samples \\
        prompts='[a red circle, a blue square above a green triangle]'
    python eval/sample.py checkpoint=... prompts_file=prompts.txt images_per_prompt=4
    python eval/sample.py checkpoint=... class_ids=[3,17] sampling.cfg_scale=4 sampling.temperature=1
    python eval/sample.py checkpoint=... modality=text prompts='[the red circle is]' \\
        text.max_new_tokens=40 text.temperature=0.8 text.top_p=0.9      (streams to the terminal)
    python eval/sample.py checkpoint=... modality=text prompts_file=p.txt out=texts.json

Every input is checked before sampling starts; files are written to a scratch folder and moved
into `out` only when all images are done, so a failed run leaves no partial output.
"""

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from unimodal.cli import parse_config
from unimodal.data.prompt_files import read_prompts
from unimodal.distributed import pick_device
from unimodal.images import save_grid, save_png
from unimodal.model.export import load_unified
from unimodal.eval_sampling import SamplingRunConfig
from unimodal.model.sampling import (ImageRequest, TextSamplingConfig, compile_for_sampling,
                                     generate_images, generate_text, max_prompt_tokens,
                                     validate_requests)


DEFAULT_OUT = "runs/samples"


@dataclass
class SampleConfig(SamplingRunConfig):
    prompts: list[str] = field(default_factory=list)  # captions, e.g. '[a red circle, a blue square]'
    prompts_file: str = ""                # one per line, a JSON list or COCO captions (added to prompts)
    class_ids: list[int] = field(default_factory=list)  # class-conditional images, e.g. [3,17]
    images_per_prompt: int = 1
    out: str = ""                         # image folder (runs/samples); modality=text: a .json ("" = stdout)
    overwrite: bool = False               # replace what out holds (else a non-empty out is refused)
    modality: str = "image"               # image | text (text: continue each prompt)
    text: TextSamplingConfig = field(default_factory=TextSamplingConfig)  # modality=text only

    def validate(self) -> None:
        super().validate()
        self.text.validate()
        if self.modality not in ("image", "text"):
            raise ValueError(f"modality={self.modality!r}: image or text")


def read_requests(args) -> list[ImageRequest]:
    prompts = list(args.prompts)
    if args.prompts_file:
        prompts += read_prompts(args.prompts_file, key="prompts_file")
    requests = [ImageRequest(caption=p) for p in prompts]
    requests += [ImageRequest(class_id=c) for c in args.class_ids]
    return [r for r in requests for _ in range(args.images_per_prompt)]


def sample_text(args) -> list[dict]:
    """Text continuations: streamed to stdout for one prompt, printed, or written as JSON."""
    if args.class_ids:
        raise ValueError("class_ids is for images; modality=text takes prompts / prompts_file")
    prompts = [r.caption for r in read_requests(args)]
    if not prompts:
        raise ValueError("nothing to sample: give prompts or prompts_file")
    cfg = args.text
    to_file = bool(args.out)
    if to_file and Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"out={args.out} exists; pass overwrite=true to replace it")
    model, _ = load_unified(args.checkpoint, pick_device(args.device))  # text: no decoder
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
                                              "sampling": asdict(cfg), "texts": results}, indent=2))
        print(f"wrote {len(results)} continuations to {args.out}", flush=True)
    else:
        for r in results:
            print(f"{r['prompt']}{r['text']}", flush=True)
    return results


def main(argv=None):
    args = parse_config(SampleConfig, argv, __doc__, __file__)
    if args.modality == "text":
        return sample_text(args)
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"out={out} is not empty: old and new images would mix; pass "
                              "overwrite=true to replace its contents, or another out")
    requests = read_requests(args)
    if not Path(args.checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint={args.checkpoint}: folder not found")
    cfg = args.sampling
    device = pick_device(args.device)
    model, tokenizer = load_unified(args.checkpoint, device,
                                    torch.bfloat16 if device.type == "cuda" else torch.float32,
                                    image_decoder=args.image_decoder)
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
            {"checkpoint": str(args.checkpoint), "image_decoder": args.image_decoder,
             "sampling": asdict(cfg), "images": names}, indent=2))
        # The scratch folder sits beside `out` (same file system): each file lands by a rename,
        # and with overwrite=true the old contents go only once all new files exist.
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
