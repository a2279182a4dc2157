"""Sample a unified-model checkpoint: images (prompts or class ids in, PNGs and a grid out), text,
or a further code modality (audio -> WAV files, video -> GIF or MP4 files).

    python eval/sample.py checkpoint=runs/quickstart/pretrain/export out=runs/samples \\
        prompts='[a red circle, a blue square above a green triangle]'
    python eval/sample.py checkpoint=... prompts_file=prompts.txt images_per_prompt=4
    python eval/sample.py checkpoint=... class_ids=[3,17] sampling.cfg_scale=4 sampling.temperature=1
    python eval/sample.py checkpoint=... modality=text prompts='[the red circle is]' \\
        text.max_new_tokens=40 text.temperature=0.8 text.top_p=0.9      (streams to the terminal)
    python eval/sample.py checkpoint=... modality=text prompts_file=p.txt out=texts.json
    python eval/sample.py checkpoint=... modality=audio prompts='["three rising notes, square wave, loud"]' \
        sampling.temperature=1 sampling.cfg_scale=2                      (00000.wav, ... in out)
    python eval/sample.py checkpoint=... modality=video prompts='[a red circle moves left]'
    python eval/sample.py checkpoint=... modality=video prompts_file=p.txt video_format=mp4 fps=8

Audio and video: the codes are drawn position by position from the model's softmax over that
modality's codes only (the `sampling.*` keys: temperature tau, 0 = greedy; cfg_scale; top_k;
top_p; seed), then decoded by the checkpoint's copy of the modality's tokenizer. A caption with
commas is quoted inside the YAML list (as above), or given in prompts_file, one per line.

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
from unimodal.data.audio_sources import write_wav
from unimodal.data.video_files import VIDEO_FORMATS, save_video
from unimodal.data.prompt_files import read_prompts
from unimodal.distributed import pick_device
from unimodal.images import save_grid, save_png
from unimodal.model.export import load_unified
from unimodal.model.modality_sampling import check_modality_prompts, generate_modality
from unimodal.eval_sampling import SamplingRunConfig, load_modality_for_sampling
from unimodal.model.modalities import NAME_PATTERN
from unimodal.model.sampling import (ImageRequest, TextSamplingConfig, compile_for_sampling,
                                     generate_images, generate_text, max_prompt_tokens,
                                     validate_requests)


DEFAULT_OUT = "runs/samples"


@dataclass
class SampleConfig(SamplingRunConfig):
    prompts: list[str] = field(default_factory=list)  # captions, e.g. '[a red circle, a blue square]'
    prompts_file: str = ""                # one per line, a JSON list or COCO captions (added to prompts)
    class_ids: list[int] = field(default_factory=list)  # class-conditional images, e.g. [3,17]
    images_per_prompt: int = 1            # samples per prompt (images, audio or video clips)
    out: str = ""                         # output folder (runs/samples); modality=text: a .json ("" = stdout)
    overwrite: bool = False               # replace what out holds (else a non-empty out is refused)
    modality: str = "image"               # image | text (continue each prompt) | a further code
                                          # modality of the checkpoint: audio (WAV), video (GIF/MP4)
    video_format: str = "gif"             # modality=video: gif | mp4 (mp4 needs the video extra)
    fps: int = 8                          # modality=video: frames per second of the files
    text: TextSamplingConfig = field(default_factory=TextSamplingConfig)  # modality=text only

    def validate(self) -> None:
        super().validate()
        self.text.validate()
        if not NAME_PATTERN.match(self.modality):
            raise ValueError(f"modality={self.modality!r}: image, text, or a code modality of the "
                             "checkpoint's vocabulary (audio, video)")
        if self.video_format not in VIDEO_FORMATS or self.fps < 1:
            raise ValueError(f"video_format={self.video_format!r} must be one of "
                             f"{list(VIDEO_FORMATS)} and fps={self.fps} >= 1")


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


def check_out(args) -> Path:
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"out={out} is not empty: old and new samples would mix; pass "
                              "overwrite=true to replace its contents, or another out")
    return out


def write_folder(out: Path, samples, suffix: str, write_one, records, header: dict,
                 list_key: str = "samples", extra=None) -> None:
    """Sample i as `{i:05d}.{suffix}` (`write_one(sample, path)`), `extra(folder)` for anything
    else (the image grid), and samples.json: `header` plus, under `list_key`, one record per
    file, `records(i)` and its file name. Everything is written to a scratch folder beside `out` (same file system),
    then each file lands by a rename; with overwrite=true the old contents go only once all new
    files exist, and a failed run leaves `out` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as scratch:
        scratch = Path(scratch)
        listed = []
        for i, sample in enumerate(samples):
            name = f"{i:05d}.{suffix}"
            write_one(sample, scratch / name)
            listed.append({"file": name, **records(i)})
        if extra is not None:
            extra(scratch)
        (scratch / "samples.json").write_text(json.dumps({**header, list_key: listed}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        for f in scratch.iterdir():
            os.replace(f, out / f.name)


def sample_code_modality(args) -> torch.Tensor:
    """Audio or video: one WAV / GIF / MP4 per prompt (x samples_per_prompt) and samples.json."""
    if args.class_ids:
        raise ValueError(f"class_ids is for images; modality={args.modality} takes prompts / "
                         "prompts_file")
    out = check_out(args)
    captions = [r.caption for r in read_requests(args)]
    model, tokenizer = load_modality_for_sampling(args, args.modality, pick_device(args.device))
    check_modality_prompts(model, args.modality, captions)  # before any file is touched
    cfg, tok = args.sampling, tokenizer.cfg
    with tqdm(total=len(captions), desc="sample", unit=args.modality) as bar:
        samples = generate_modality(model, tokenizer, args.modality, captions, cfg,
                                    args.batch_size, bar)
    suffix = "wav" if tok.modality == "audio" else args.video_format

    def write_one(clip: torch.Tensor, path: Path) -> None:
        if tok.modality == "audio":
            write_wav(path, clip, tok.sample_rate)
        else:  # (3, F, H, W) -> frames
            save_video(clip.transpose(0, 1), path, args.video_format, args.fps)
    write_folder(out, samples, suffix, write_one,
                 lambda i: {"prompt": captions[i], "seed": cfg.image_seed(i)},
                 {"checkpoint": str(args.checkpoint), "modality": args.modality,
                  "sampling": asdict(cfg)})
    print(f"wrote {len(captions)} {args.modality} samples to {out}", flush=True)
    return samples


def main(argv=None):
    args = parse_config(SampleConfig, argv, __doc__, __file__)
    if args.modality == "text":
        return sample_text(args)
    if args.modality != "image":
        return sample_code_modality(args)
    out = check_out(args)
    requests = read_requests(args)
    if not Path(args.checkpoint).is_dir():
        raise FileNotFoundError(f"checkpoint={args.checkpoint}: folder not found")
    cfg = args.sampling
    device = pick_device(args.device)
    model, tokenizer = load_unified(args.checkpoint, device,
                                    torch.bfloat16 if device.type == "cuda" else torch.float32,
                                    image_decoder=args.image_decoder)
    if args.compile:  # images only here: text and audio/video returned above
        compile_for_sampling(model, tokenizer, args.cuda_graphs, channels_last=True,
                             overlap_decode=args.overlap_decode, fp8=args.fp8,
                             fp8_keep_bf16=tuple(args.fp8_keep_bf16))
    validate_requests(requests, model.vocab, max_prompt_tokens(model))
    with tqdm(total=len(requests), desc="sample", unit="img") as bar:
        images = generate_images(model, tokenizer, requests, cfg, args.batch_size, bar,
                                 overlap_decode=args.overlap_decode)

    write_folder(out, images, "png", save_png,
                 lambda i: {"prompt": requests[i].caption, "class_id": requests[i].class_id,
                            "seed": cfg.image_seed(i)},
                 {"checkpoint": str(args.checkpoint), "image_decoder": args.image_decoder,
                  "sampling": asdict(cfg)}, list_key="images",
                 extra=lambda folder: save_grid(images, folder / "grid.png",
                                                nrow=min(8, len(images))))
    print(f"wrote {len(requests)} images and grid.png to {out}", flush=True)
    return images


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
