#!/usr/bin/env bash
# One model, all modalities, on one GPU (<= 10 minutes): the image, audio and video tokenizers
# side by side, their code shards, a mixed model (text, images, audio, video; configs/
# mix_modalities_gpu.yaml) and beside it a text-only model that sees as many text tokens, then
# prompt following of the mixed model's samples per modality. Prints one table last:
# reconstruction quality and checker accuracy of each tokenizer, the checker's accuracy on the
# samples of held-out captions, and the held-out text loss of the mixed vs the text-only run.
# Before it, eval/modality_curves.py writes <out>/curves.png (tokenizer reconstruction and the
# mixed model's loss per modality against steps) and tabulates where each curve stopped.
#   bash eval/gpu_modalities_run.sh                 (outputs under runs/gpu_modalities)
#   MINUTES=2.5   training cap of each tokenizer (the three share the GPU)
#   STEPS=1200    pretraining steps of both models
#   PROMPTS=128   held-out captions scored per modality
#   CFG_SCALE=2 TEMPERATURE=0.7   sampling of all three modalities
#   SCORE_COMPILE=true   torch.compile for the samplers (false: eager)
#   SCORE_SECONDS=150    each scorer is stopped after this long, so the table always prints
#                        (a stopped scorer's cells read "-"; lower PROMPTS to fit)
#   RUN_DIR=runs/gm2 puts everything elsewhere (the config's paths are rewritten to it)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${RUN_DIR:-runs/gpu_modalities}   # RUN_DIR, not OUT: the GPU runner's own output folder is $OUT
minutes=${MINUTES:-2.5} steps=${STEPS:-1200} prompts=${PROMPTS:-128}
score_limit="timeout ${SCORE_SECONDS:-150}"
sampling="sampling.cfg_scale=${CFG_SCALE:-2} sampling.temperature=${TEMPERATURE:-0.7} compile=${SCORE_COMPILE:-true}"
config=configs/mix_modalities_gpu.yaml
mkdir -p $out/text
if [ "$out" != runs/gpu_modalities ]; then
    sed "s#runs/gpu_modalities/#$out/#g" $config > $out/mix.yaml
    config=$out/mix.yaml
fi
stage() { echo "[$(date +%T)] $*"; }
. eval/background_jobs.sh   # run_in_background, wait_all

stage "tokenizers (image, audio, video, $minutes min each, side by side) and the text shards"
# Loader workers split between the three (14 of the host's 16 cores), so none starves the others.
run_in_background image_tokenizer $py tokenizers/train_rdpm.py --config configs/rdpm_shapes64_gpu.yaml \
    train.out_dir=$out/image_tokenizer train.max_minutes=$minutes train.overwrite=true data.num_workers=4
run_in_background audio_tokenizer $py tokenizers/train_rdpm.py --config configs/rdpm_audio_gpu.yaml \
    train.out_dir=$out/audio_tokenizer train.max_minutes=$minutes train.overwrite=true data.num_workers=4
run_in_background video_tokenizer $py tokenizers/train_rdpm.py --config configs/rdpm_video_gpu.yaml \
    train.out_dir=$out/video_tokenizer train.max_minutes=$minutes train.overwrite=true data.num_workers=6
text_stage() {
    $py -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
    $py tokenizers/train_text.py "input=[$out/text/corpus.txt]" out=$out/text/text.model vocab_size=512
    $py tokenizers/encode_text.py "input=[$out/text/corpus.txt]" out_dir=$out/text_shards \
        text_tokenizer=$out/text/text.model shard_size=1000
}
run_in_background text text_stage
wait_all

stage "code shards: 10000 images, 20000 audio clips, 10000 video clips"
encode() {  # encode <name> <source> <samples> <overrides...>
    local name=$1 source=$2 samples=$3
    shift 3
    run_in_background encode_$name $py tokenizers/encode.py tokenizer=$out/${name}_tokenizer/tokenizer \
        out_dir=$out/${name}_codes data.source=$source data.num_samples=$samples shard_size=1000 \
        batch_size=128 device=cuda overwrite=true "$@"
}
encode image shapes 10000 data.image_size=64 data.num_workers=4
encode audio notes 20000 data.num_workers=5
encode video moving_shapes 10000 data.num_workers=5
wait_all

# Equal text tokens: the text-only run packs one row per step of as many tokens as the mixed
# stream places from its text source per step (measured on that stream).
text_len=$($py - "$config" <<'PY'
import sys
from unimodal.config import load_config
from unimodal.data.mixture import PackedBatchStream
from unimodal.data.mixture_report import measure_mixture
from unimodal.model.vocabulary import Vocabulary
from unimodal.pretraining.config import PretrainConfig
from unimodal.tokenizer.rdpm_tokenizer import load_tokenizer_config

cfg = load_config(PretrainConfig, sys.argv[1])
cfg.data.num_workers = 0
latent_dim = load_tokenizer_config(cfg.model.image_tokenizer).latent_dim
stream = PackedBatchStream(cfg.data, Vocabulary.build(cfg.model.vocab), latent_dim)
stats = measure_mixture(stream, 40)
text = sum(t for t, s in zip(stats["tokens"], cfg.data.sources) if s.kind == "text")
print(max(64, round(text / stats["batches"])))
PY
)
text_source=$($py -c "import yaml; s = [x for x in yaml.safe_load(open('$config'))['data']['sources'] if x['kind'] == 'text'][0]; print('{name: %s, kind: text, shards: \"%s\", weight: 1.0}' % (s['name'], s['shards']))")
stage "pretraining $steps steps: the mixed model, and a text-only one of $text_len text tokens per step beside it"
run_in_background pretrain $py train/pretrain.py --config $config train.steps=$steps train.overwrite=true
run_in_background pretrain_text_only $py train/pretrain.py --config $config train.steps=$steps \
    train.out_dir=$out/pretrain_text_only train.overwrite=true "data.sources=[$text_source]" \
    data.seq_len=$text_len data.rows_per_batch=1 data.num_workers=1
wait_all

# The text loss of both models on the same held-out text (another seed of the corpus): training
# text_loss of the mixed run also counts captions and end markers, which the text-only run lacks.
stage "held-out text loss of both models"
$py - $out/pretrain/export $out/pretrain_text_only/export > $out/text_eval.json <<'PY'
import json
import sys

import torch

from unimodal.data.sequences import pack_documents, text_document
from unimodal.data.text_corpus import shapes_text_corpus
from unimodal.model.export import load_unified

texts = shapes_text_corpus(1024, seed=2)
losses = {}
for name, folder in zip(("mixed", "text_only"), sys.argv[1:]):
    model, _ = load_unified(folder, "cuda")
    docs = [text_document(model.vocab, model.vocab.encode_text(t)) for t in texts]
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(docs), 128):
            batch = pack_documents(docs[start:start + 128], seq_len=1024, pad_id=model.vocab.pad_id)
            batch.update({k: v for k, v in model.objective.empty_blocks().items() if k not in batch})
            out = model({k: v.cuda() for k, v in batch.items()})
            loss_sum += float(out["text_loss"]) * int(out["text_tokens"])
            tokens += int(out["text_tokens"])
    losses[name] = loss_sum / max(tokens, 1)
print(json.dumps(losses))
PY

stage "prompt following of the samples: audio, video and images, side by side"
run_in_background score_audio $score_limit $py eval/modality_score.py checkpoint=$out/pretrain/export modality=audio \
    prompts=$prompts $sampling batch_size=128 out=$out/score_audio device=cuda
run_in_background score_video $score_limit $py eval/modality_score.py checkpoint=$out/pretrain/export modality=video \
    prompts=$prompts $sampling batch_size=128 out=$out/score_video device=cuda
run_in_background score_image $score_limit $py eval/shapes_score.py checkpoint=$out/pretrain/export captions=$prompts \
    per_class=0 $sampling batch_size=128 out=$out/score_image device=cuda
wait_all || true
stage done
# Where each curve stood and how fast it still moved: <out>/curves.png and a table.
$py eval/modality_curves.py run=$out || true

$py - "$out" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def read(path):
    try:
        return json.loads((out / path).read_text())
    except (OSError, ValueError):
        return {}


def last(path):
    try:
        return json.loads((out / path).read_text().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}


def pct(x):
    return "-" if x is None else f"{x:.1%}"


image, audio, video = (read(f"{m}_tokenizer/metrics.json") for m in ("image", "audio", "video"))
shapes = read("score_image/shapes_score.json").get("metrics", {}).get("caption", {})
mixed, text_only = last("pretrain/log.jsonl"), last("pretrain_text_only/log.jsonl")
print("\n| modality | tokenizer (held-out) | checker on reconstructions | checker on samples | train loss |")
print("|---|---|---|---|---|")
print(f"| image | PSNR {image.get('psnr', float('nan')):.2f} dB | {pct(image.get('checker', {}).get('prompt'))} "
      f"| {pct(shapes.get('prompt'))} | {mixed.get('image_loss', float('nan')):.3f} |")
print(f"| audio | SNR {audio.get('snr_db', float('nan')):.2f} dB | {pct(audio.get('checker', {}).get('prompt'))} "
      f"| {pct(read('score_audio/modality_score.json').get('accuracy', {}).get('prompt'))} "
      f"| {mixed.get('audio_loss', float('nan')):.3f} |")
print(f"| video | PSNR {video.get('psnr', float('nan')):.2f} dB | {pct(video.get('checker', {}).get('prompt'))} "
      f"| {pct(read('score_video/modality_score.json').get('accuracy', {}).get('prompt'))} "
      f"| {mixed.get('video_loss', float('nan')):.3f} |")
held_out = read("text_eval.json")
a, b = held_out.get("mixed"), held_out.get("text_only")
ratio = f"{a / b - 1:+.1%}" if a and b else "-"
print(f"| text | | | | held-out text loss: mixed {a if a is None else round(a, 4)} vs text-only "
      f"{b if b is None else round(b, 4)} at equal text tokens ({ratio}); train text_loss "
      f"{mixed.get('text_loss', float('nan')):.4f} / {text_only.get('text_loss', float('nan')):.4f} |")
print(f"\nmixed: {mixed.get('step')} steps in {mixed.get('elapsed_s', 0) / 60:.1f} min, "
      f"{mixed.get('tokens_per_s', 0):.0f} tokens/s; targets: audio recon >= 95%, samples >= 80%; "
      "video recon >= 95%, samples >= 70%; text loss within 5% of text-only")
for m in ("audio", "video"):
    acc = read(f"score_{m}/modality_score.json").get("accuracy", {})
    print(f"{m} samples per attribute:", {k: pct(v) for k, v in acc.items()
                                          if isinstance(v, float) and "_" not in k})
PY
