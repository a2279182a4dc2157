#!/usr/bin/env bash
# The whole pipeline on the built-in shapes data, on the CPU (about 8 minutes on 2 cores):
#   1. train a tiny RDPM tokenizer          -> runs/quickstart/tokenizer (reconstructions.png)
#   2. encode 4000 shapes images into code shards
#   3. train a sentencepiece text tokenizer and encode a generated text set into text shards
#   4. pretrain a tiny unified model with DeepSpeed (one process, ZeRO 2, gloo)
#   5. sample PNGs from prompts and class ids -> runs/quickstart/samples/grid.png
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/quickstart
python tokenizers/train_rdpm.py --config configs/rdpm_tiny.yaml train.out_dir=$out/tokenizer train.steps=500
python tokenizers/encode.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/codes data.source=shapes \
    data.image_size=64 data.num_samples=4000 data.num_workers=1 shard_size=1000 batch_size=64 \
    device=cpu precision=fp32
mkdir -p $out/text
python -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
python tokenizers/train_text.py --input $out/text/corpus.txt --out $out/text/text.model --vocab-size 512
python tokenizers/encode_text.py --input $out/text/corpus.txt --out-dir $out/text_shards \
    --text-tokenizer $out/text/text.model --shard-size 1000
python train/pretrain.py --config configs/uni_tiny.yaml
python eval/sample.py --checkpoint $out/pretrain/export --out $out/samples --device cpu \
    --prompt "a red circle" --prompt "a blue square above a yellow triangle" \
    --prompt "a green diamond on the left" --class-id 0 --class-id 9 --class-id 20 \
    --cfg-scale 2 --temperature 0.7
echo "done: $out/tokenizer/reconstructions.png and $out/samples/grid.png"
