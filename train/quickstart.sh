#!/usr/bin/env bash
# The whole pipeline on the built-in shapes data, on the CPU (README gives the measured time):
#   1. train a tiny RDPM tokenizer          -> runs/quickstart/tokenizer (reconstructions.png)
#      meanwhile, in the background: train a sentencepiece text tokenizer and encode a generated
#      text set into text shards (one core's worth of work the tokenizer leaves idle)
#   2. encode 4000 shapes images into code shards
#   3. pretrain a tiny unified model with DeepSpeed (one process, ZeRO 2, gloo)
#   4. sample PNGs from prompts and class ids -> runs/quickstart/samples/grid.png, and beside it
#   5. score both stages with the shapes checker: the tokenizer's held-out reconstructions (the
#      ceiling any generator on it can reach) and the unified model's samples from held-out prompts
# Each stage prints its wall time; a rerun replaces the last run's outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/quickstart
stage() { echo "[quickstart] $1 done in $((SECONDS - t0)) s (total $SECONDS s)"; t0=$SECONDS; }
mkdir -p $out
t0=$SECONDS

text_stage() {
    mkdir -p $out/text
    python -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
    python tokenizers/train_text.py "input=[$out/text/corpus.txt]" out=$out/text/text.model vocab_size=512
    python tokenizers/encode_text.py "input=[$out/text/corpus.txt]" out_dir=$out/text_shards \
        text_tokenizer=$out/text/text.model shard_size=1000
}
text_stage > $out/text.log 2>&1 &
text_pid=$!

python tokenizers/train_rdpm.py --config configs/rdpm_tiny.yaml train.out_dir=$out/tokenizer \
    train.overwrite=true train.eval_images=128
stage "tokenizer"
wait $text_pid || { cat $out/text.log; echo "text stage failed (log above)"; exit 1; }
python tokenizers/encode.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/codes data.source=shapes \
    data.image_size=64 data.num_samples=4000 data.num_workers=1 shard_size=1000 batch_size=64 \
    device=cpu precision=fp32 overwrite=true
stage "code shards (text shards: $out/text.log)"
python train/pretrain.py --config configs/uni_tiny.yaml train.overwrite=true
stage "pretraining"
# The sample grid and the scoring side by side: each script spends its first seconds importing
# torch on one core, which the other's sampling can use (one thread for the grid's 6 images).
OMP_NUM_THREADS=1 python eval/sample.py checkpoint=$out/pretrain/export out=$out/samples overwrite=true device=cpu \
    prompts="[a red circle, a blue square above a yellow triangle, a green diamond on the left]" \
    class_ids=[0,9,20] sampling.cfg_scale=2 sampling.temperature=0.7 > $out/samples.log 2>&1 &
samples_pid=$!
# The score folder resumes by design (eval/shapes_score.py refuses a folder sampled from another
# checkpoint): a quickstart rerun scores its new model from scratch. The tokenizer's ceiling is its
# training's own held-out evaluation (128 images, metrics.json): no second pass over them.
rm -rf $out/shapes_score
python eval/shapes_score.py checkpoint=$out/pretrain/export captions=64 per_class=2 \
    sampling.cfg_scale=2 sampling.temperature=0.7 out=$out/shapes_score device=cpu
wait $samples_pid || { cat $out/samples.log; echo "sampling failed (log above)"; exit 1; }
cat $out/samples.log
stage "samples and scoring"
python eval/quickstart_summary.py tokenizer_run=$out/tokenizer score=$out/shapes_score
echo "done in $SECONDS s: $out/tokenizer/reconstructions.png, $out/samples/grid.png, $out/shapes_score/shapes_score.md"
