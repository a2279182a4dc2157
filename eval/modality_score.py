"""Prompt following of a mixed model's audio or video samples, scored by the built-in checkers.

    python eval/modality_score.py checkpoint=runs/gpu_modalities/pretrain/export modality=audio \\
        prompts=128 sampling.cfg_scale=2 sampling.temperature=0.7 out=runs/gpu_modalities/score_audio

Held-out captions of the built-in sets (audio notes, moving shapes; unimodal/metrics/
modality_following.py) are sampled with the `sampling.*` keys as eval/sample.py samples them,
decoded by the checkpoint's copy of the modality's tokenizer, and scored by the audio or video
checker. Writes modality_score.json (accuracies per attribute, settings) and the first `keep`
samples as WAV / GIF files beside it; prints the accuracies.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from unimodal.cli import parse_config
from unimodal.data.audio_sources import write_wav
from unimodal.data.video_files import save_gif
from unimodal.distributed import pick_device
from unimodal.eval_sampling import SamplingRunConfig, checkpoint_sha256, load_modality_for_sampling
from unimodal.metrics.modality_following import heldout_captions, score_samples
from unimodal.model.modality_sampling import generate_modality


@dataclass
class ModalityScoreConfig(SamplingRunConfig):
    modality: str = "audio"               # a code modality of the checkpoint (its tokenizer: audio or video)
    prompts: int = 128                    # held-out captions, one sample each
    caption_seed: int = 0                 # seed of the built-in set the captions come from
    out: str = ""                         # folder for modality_score.json and example files ("" = none)
    keep: int = 8                         # samples written as WAV / GIF files into out

    def validate(self) -> None:
        super().validate()
        if self.prompts < 1 or self.keep < 0:
            raise ValueError(f"prompts={self.prompts} must be >= 1 and keep={self.keep} >= 0")


def main(argv=None):
    args = parse_config(ModalityScoreConfig, argv, __doc__, __file__)
    model, tokenizer = load_modality_for_sampling(args, args.modality, pick_device(args.device))
    tok = tokenizer.cfg
    if tok.modality not in ("audio", "video"):
        raise ValueError(f"modality={args.modality}: its tokenizer is {tok.modality}; the checkers "
                         "score audio and video")
    captions = heldout_captions(tok.modality, args.prompts, args.caption_seed, tok.num_frames)
    with tqdm(total=len(captions), desc=f"sample {args.modality}", unit="clip") as bar:
        samples = generate_modality(model, tokenizer, args.modality, captions, args.sampling,
                                    args.batch_size, bar)
    accuracy = score_samples(tok.modality, samples, captions, tok.sample_rate)
    report = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": checkpoint_sha256(args.checkpoint),
              "modality": args.modality, "prompts": len(captions), "caption_seed": args.caption_seed,
              "sampling": asdict(args.sampling), "accuracy": accuracy}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i, (sample, caption) in enumerate(list(zip(samples, captions))[:args.keep]):
            if tok.modality == "audio":
                write_wav(out / f"{i:03d}.wav", sample, tok.sample_rate)
            else:
                save_gif(sample.transpose(0, 1), out / f"{i:03d}.gif")
        report["examples"] = captions[:args.keep]
        (out / "modality_score.json").write_text(json.dumps(report, indent=2))
    shown = {k: round(v, 4) for k, v in accuracy.items() if isinstance(v, float) and "_" not in k}
    print(f"{args.modality} prompt following ({len(captions)} held-out captions): {shown}", flush=True)
    return report


if __name__ == "__main__":
    from unimodal.cli import run_main

    run_main(main)
