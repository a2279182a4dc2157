#!/usr/bin/env bash
# A short real run on one GPU (<= 10 minutes): the quickstart pipeline at a useful size, then
# prompt-following accuracy and samples from held-out captions.
#   bash eval/gpu_shapes_run.sh [OUT]        (default runs/gpu_shapes; configs point there)
# Prints the pretraining loss curve and the shapes_score table last.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=runs/gpu_shapes
mkdir -p $out/text
$py tokenizers/train_rdpm.py --config configs/rdpm_shapes64_gpu.yaml
$py tokenizers/encode.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/codes data.source=shapes \
    data.image_size=64 data.num_samples=20000 data.num_workers=8 shard_size=1000 batch_size=256 device=cuda
$py -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
$py tokenizers/train_text.py --input $out/text/corpus.txt --out $out/text/text.model --vocab-size 512
$py tokenizers/encode_text.py --input $out/text/corpus.txt --out-dir $out/text_shards \
    --text-tokenizer $out/text/text.model --shard-size 1000
$py train/pretrain.py --config configs/uni_shapes_gpu.yaml
$py eval/shapes_score.py --checkpoint $out/pretrain/export --captions 256 --per-class 8 \
    --cfg-scale 2 --temperature 0.7 --out $out/shapes_score --device cuda
$py -c "from unimodal.data.shapes import render_sample; [print(render_sample(1_000_000 + i, 0, 64).caption) for i in range(16)]" > $out/heldout_captions.txt
$py eval/sample.py --checkpoint $out/pretrain/export --out $out/samples \
    --prompts-file $out/heldout_captions.txt --cfg-scale 2 --temperature 0.7
echo "pretraining loss (step, loss, text_loss, image_loss):"
$py -c "import json; [print(r['step'], round(r['loss'], 3), round(r['text_loss'], 3), round(r['image_loss'], 3)) for r in map(json.loads, open('$out/pretrain/log.jsonl'))]"
cat $out/tokenizer/metrics.json
cat $out/shapes_score/shapes_score.md
