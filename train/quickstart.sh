#!/usr/bin/env bash
# The whole pipeline on the built-in shapes data, on the CPU (README gives the measured time):
#   1. train a tiny RDPM tokenizer          -> runs/quickstart/tokenizer (reconstructions.png)
#   2. encode 4000 shapes images into code shards
#   3. train a sentencepiece text tokenizer and encode a generated text set into text shards
#   4. pretrain a tiny unified model with DeepSpeed (one process, ZeRO 2, gloo)
#   5. sample PNGs from prompts and class ids -> runs/quickstart/samples/grid.png
#   6. score both stages with the shapes checker: the tokenizer's reconstructions (the ceiling any
#      generator on it can reach) and the unified model's samples from held-out prompts
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/quickstart
python tokenizers/train_rdpm.py --config configs/rdpm_tiny.yaml train.out_dir=$out/tokenizer train.steps=500 \
    train.overwrite=true
python tokenizers/encode.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/codes data.source=shapes \
    data.image_size=64 data.num_samples=4000 data.num_workers=1 shard_size=1000 batch_size=64 \
    device=cpu precision=fp32 overwrite=true
mkdir -p $out/text
python -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
python tokenizers/train_text.py "input=[$out/text/corpus.txt]" out=$out/text/text.model vocab_size=512
python tokenizers/encode_text.py "input=[$out/text/corpus.txt]" out_dir=$out/text_shards \
    text_tokenizer=$out/text/text.model shard_size=1000
python train/pretrain.py --config configs/uni_tiny.yaml train.overwrite=true
python eval/sample.py checkpoint=$out/pretrain/export out=$out/samples overwrite=true device=cpu \
    prompts="[a red circle, a blue square above a yellow triangle, a green diamond on the left]" \
    class_ids=[0,9,20] sampling.cfg_scale=2 sampling.temperature=0.7
python eval/recon.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/recon data.source=shapes \
    data.image_size=64 data.num_samples=20000 max_images=128 save_images=false device=cpu
python eval/shapes_score.py checkpoint=$out/pretrain/export captions=64 per_class=2 \
    sampling.cfg_scale=2 sampling.temperature=0.7 out=$out/shapes_score device=cpu
python eval/quickstart_summary.py recon=$out/recon score=$out/shapes_score
echo "done: $out/tokenizer/reconstructions.png, $out/samples/grid.png, $out/shapes_score/shapes_score.md"
