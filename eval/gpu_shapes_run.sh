#!/usr/bin/env bash
# A short real run on one GPU (<= 10 minutes): the quickstart pipeline at a useful size, then the
# tokenizer's ceiling (the shapes checker on its reconstructions), prompt following of the unified
# model, and where generation goes wrong (per-step teacher forcing, shuffled prompts, oracle prefix),
# and prompt following against training minutes (eval/accuracy_curve.py on the periodic exports).
#   bash eval/gpu_shapes_run.sh                  (outputs under runs/gpu_shapes; configs point there)
#   HEADS="latent shared" bash eval/gpu_shapes_run.sh    train one generator per code head, side by
#                                                        side, and score each
#   VARIANTS="base=model.code_head=latent;deep=model.code_head=latent,model.backbone.num_layers=8"
#       bash eval/gpu_shapes_run.sh      any pretraining overrides (comma-separated), one generator
#                                        per variant side by side; a sweep in one call; commas
#                                        inside [...] stay in the value: data.step_weights=[1,1,2]
#   CURVE=0 skips the accuracy curve (saves about a minute when three variants share the call)
#   RUN_DIR=runs/gs_phi09 TOKENIZER_OVERRIDES="model.phi=0.9" bash eval/gpu_shapes_run.sh
#       a second pipeline in its own folder (the configs' runs/gpu_shapes paths are rewritten to
#       RUN_DIR), with overrides for the tokenizer; two such pipelines can share one GPU call.
#       GPU_TESTS=0 skips the GPU tests (run them in one of the two).
#   ENCODE_IMAGES=60000 encodes more images for pretraining (default 20000; the config's shard
#       patterns are rewritten to match)
#   SAMPLING_SWEEP="1:0.7 4:0.7 2:0.3" also scores the first variant at each CFG scale:temperature
#       (128 captions, 4 images per class each, all at once next to the main scoring)
#   DECODER_STEPS=1000 fine-tunes the tokenizer's decoder on its frozen codes (cosine lr) beside the
#       pretraining: the codes, hence the shards and the generator, are unchanged; the ceiling and
#       the samples are then decoded by it, and each generator is also scored with the first
#       decoder on the same codes (shapes_score_<name>_base_decoder). 0 = off. DECODER_OVERRIDES
#       adds tokenizer-training overrides to it.
#   CAPTIONS=256 PER_CLASS=8: held-out captions and images per class scored per generator
# Prints the tables last.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${RUN_DIR:-runs/gpu_shapes}   # RUN_DIR, not OUT: the GPU runner's own output folder is $OUT
tok_config=configs/rdpm_shapes64_gpu.yaml
uni_config=configs/uni_shapes_gpu.yaml
# Images encoded for pretraining, in shards of 1000 (ENCODE_IMAGES: more data for longer runs).
encode_images=${ENCODE_IMAGES:-20000}
last_shard=$(printf "%06d" $(( (encode_images + 999) / 1000 - 1 )))
if [ "$out" != runs/gpu_shapes ] || [ "$last_shard" != 000019 ]; then
    # the same configs, pointed at $out and at every encoded shard
    mkdir -p $out/configs
    sed "s#runs/gpu_shapes/#$out/#g" $tok_config > $out/configs/rdpm.yaml
    sed -e "s#runs/gpu_shapes/#$out/#g" -e "s#shard-{000000..000019}.tar#shard-{000000..$last_shard}.tar#g" \
        $uni_config > $out/configs/uni.yaml
    tok_config=$out/configs/rdpm.yaml uni_config=$out/configs/uni.yaml
fi
# Variants "name=key=value,key=value;..." (HEADS="a b" is short for one variant per code head).
spec=${VARIANTS:-}
if [ -z "$spec" ]; then
    for h in ${HEADS:-latent}; do spec+="$h=model.code_head=$h;"; done
fi
heads=()
declare -A overrides
IFS=';' read -ra parts <<< "$spec"
for part in "${parts[@]}"; do
    [ -z "$part" ] && continue
    heads+=("${part%%=*}")
    overrides[${part%%=*}]="${part#*=}"
done
# The overrides of one variant as words: split at commas outside [...] (list values keep theirs).
split_overrides() {
    local s=$1 cur="" c i depth=0
    args=()
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            "[") depth=$((depth + 1)) ;;
            "]") depth=$((depth - 1)) ;;
            ",") if [ $depth -eq 0 ]; then [ -n "$cur" ] && args+=("$cur"); cur=""; continue; fi ;;
        esac
        cur+=$c
    done
    [ -n "$cur" ] && args+=("$cur")
    return 0
}
sampling="sampling.cfg_scale=${CFG_SCALE:-2} sampling.temperature=${TEMPERATURE:-0.7}"
captions=${CAPTIONS:-256} per_class=${PER_CLASS:-8}
mkdir -p $out/text
stage() { echo "[$(date +%T)] $*"; }
# Jobs that only report (GPU tests, the ceiling check) run in the background beside the stages
# that need the GPU's time; they are waited for before the summary.
side_pids=()
if [ "${GPU_TESTS:-1}" = 1 ]; then
    stage "GPU tests (flex_attention BlockMask vs the dense SDPA mask, ...), beside the tokenizer"
    ( $py -m pytest -q -m gpu tests/model/test_unified.py > $out/gpu_tests.log 2>&1 \
        || echo "GPU tests FAILED: see $out/gpu_tests.log" ) &
    side_pids+=($!)
fi
stage "tokenizer ${TOKENIZER_OVERRIDES:-}"
$py tokenizers/train_rdpm.py --config $tok_config train.overwrite=true ${TOKENIZER_OVERRIDES:-}
stage "encode, and the tokenizer ceiling beside it"
$py eval/recon.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/recon data.source=shapes \
    data.image_size=64 data.num_samples=200000 data.heldout_samples=512 max_images=512 batch_size=128 \
    save_images=false > $out/recon.log 2>&1 &
side_pids+=($!)
$py tokenizers/encode.py tokenizer=$out/tokenizer/tokenizer out_dir=$out/codes data.source=shapes \
    data.image_size=64 data.num_samples=$encode_images data.num_workers=8 shard_size=1000 batch_size=256 device=cuda \
    overwrite=true
$py -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $out/text/corpus.txt
$py tokenizers/train_text.py "input=[$out/text/corpus.txt]" out=$out/text/text.model vocab_size=512
$py tokenizers/encode_text.py "input=[$out/text/corpus.txt]" out_dir=$out/text_shards \
    text_tokenizer=$out/text/text.model shard_size=1000
stage "pretraining: ${heads[*]}"
pids=()
decoder_steps=${DECODER_STEPS:-1000}
decoder=$out/tokenizer/tokenizer   # what decodes sampled codes: the fine-tuned decoder when there is one
if [ "$decoder_steps" -gt 0 ]; then
    decoder=$out/tokenizer_ft/tokenizer
    stage "decoder fine-tune ($decoder_steps steps on frozen codes), beside the pretraining"
    ( $py tokenizers/train_rdpm.py --config $tok_config ${TOKENIZER_OVERRIDES:-} \
        train.out_dir=$out/tokenizer_ft train.init_from=$out/tokenizer/tokenizer \
        train.train_only=decoder train.steps=$decoder_steps optim.schedule=cosine \
        train.overwrite=true data.num_workers=4 ${DECODER_OVERRIDES:-} > $out/tokenizer_ft.log 2>&1 \
      && $py eval/recon.py tokenizer=$decoder out_dir=$out/recon_ft data.source=shapes \
        data.image_size=64 data.num_samples=200000 data.heldout_samples=512 max_images=512 \
        batch_size=128 save_images=false > $out/recon_ft.log 2>&1 ) &
    side_pids+=($!)
fi
for head in "${heads[@]}"; do
    split_overrides "${overrides[$head]}"
    $py train/pretrain.py --config $uni_config "${args[@]}" \
        train.out_dir=$out/pretrain_$head train.overwrite=true > $out/pretrain_$head.log 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait $pid || echo "a job failed (exit $?): see the logs in $out"; done
if [ "$decoder_steps" -gt 0 ]; then  # the decoder must be done before anything is decoded by it
    wait ${side_pids[-1]} || echo "the decoder fine-tune or its ceiling check failed: see $out/tokenizer_ft.log"
    unset 'side_pids[-1]'
    [ -f $decoder/tokenizer.safetensors ] || decoder=$out/tokenizer/tokenizer
fi
stage scoring
# Every scoring job of every head at once: they are small next to one GPU, and mostly start-up.
$py -c "from unimodal.data.shapes import render_sample; [print(render_sample(1_000_000 + i, 0, 64).caption) for i in range(16)]" > $out/heldout_captions.txt
pids=()
for head in "${heads[@]}"; do
    $py eval/shapes_score.py checkpoint=$out/pretrain_$head/export captions=$captions \
        per_class=$per_class $sampling out=$out/shapes_score_$head device=cuda batch_size=128 \
        image_decoder=$decoder > $out/shapes_score_$head.log 2>&1 &
    pids+=($!)
    if [ "$decoder_steps" -gt 0 ]; then  # the same codes through the first decoder
        $py eval/shapes_score.py checkpoint=$out/pretrain_$head/export captions=$captions \
            per_class=$per_class $sampling out=$out/shapes_score_${head}_base_decoder device=cuda \
            batch_size=128 > $out/shapes_score_${head}_base_decoder.log 2>&1 &
        pids+=($!)
    fi
    $py eval/generator_diagnostics.py checkpoint=$out/pretrain_$head/export images=128 \
        prefix_steps=[0,4,6,8,9,10] $sampling out=$out/generator_$head device=cuda \
        image_decoder=$decoder > $out/generator_$head.log 2>&1 &
    pids+=($!)
    $py eval/sample.py checkpoint=$out/pretrain_$head/export out=$out/samples_$head overwrite=true \
        prompts_file=$out/heldout_captions.txt $sampling image_decoder=$decoder \
        > $out/samples_$head.log 2>&1 &
    pids+=($!)
done
head0=${heads[0]}
for setting in ${SAMPLING_SWEEP:-}; do
    cfg=${setting%%:*} tau=${setting#*:}
    $py eval/shapes_score.py checkpoint=$out/pretrain_$head0/export captions=128 per_class=4 \
        sampling.cfg_scale=$cfg sampling.temperature=$tau out=$out/sweep_${head0}_cfg${cfg}_tau${tau} \
        device=cuda batch_size=128 image_decoder=$decoder > $out/sweep_${head0}_cfg${cfg}_tau${tau}.log 2>&1 &
    pids+=($!)
done
if [ "${CURVE:-1}" = 1 ]; then  # accuracy against training minutes, next to the other scoring
    $py eval/accuracy_curve.py run=$out/pretrain_$head0 captions=128 per_class=4 $sampling \
        device=cuda jobs=8 image_decoder=$decoder > $out/accuracy_curve_$head0.log 2>&1 &
    pids+=($!)
fi
for pid in "${pids[@]}" "${side_pids[@]}"; do wait $pid || echo "a job failed (exit $?): see the logs in $out"; done
stage done
summary() {
for head in "${heads[@]}"; do
    echo "== $head (${overrides[$head]}): pretraining (step, loss, text_loss, image_loss, tokens/s, data_wait_frac, minutes)"
    $py -c "import json; r = [json.loads(l) for l in open('$out/pretrain_$head/log.jsonl')][-1]; print(r['step'], round(r['loss'], 3), round(r['text_loss'], 3), round(r['image_loss'], 3), round(r['tokens_per_s']), round(r.get('data_wait_frac', -1), 3), round(r['elapsed_s'] / 60, 2))"
    cat $out/generator_$head/generator_diagnostics.md || true
    head -8 $out/shapes_score_$head/shapes_score.md || true
    if [ -f $out/shapes_score_${head}_base_decoder/shapes_score.md ]; then
        echo "-- the same codes through the first decoder (before its fine-tune)"
        sed -n 3,8p $out/shapes_score_${head}_base_decoder/shapes_score.md
    fi
done
if [ -n "${SAMPLING_SWEEP:-}" ]; then
    echo "== sampling sweep on $head0 (128 captions, 4 per class): cfg tau | caption whole | class whole"
    for setting in $SAMPLING_SWEEP; do
        cfg=${setting%%:*} tau=${setting#*:}
        $py -c "import json; r = json.load(open('$out/sweep_${head0}_cfg${cfg}_tau${tau}/shapes_score.json')); print('$cfg $tau |', round(r['metrics']['caption']['prompt'], 4), '|', round(r['metrics']['class']['prompt'], 4))" || true
    done
fi
echo "== accuracy against training minutes ($head0)"
tail -8 $out/accuracy_curve_$head0.log || true
echo "== GPU tests"
tail -1 $out/gpu_tests.log 2>/dev/null || echo "skipped (GPU_TESTS=0)"
echo "== tokenizer (held-out): metrics.json"
$py -c "import json; m = json.load(open('$out/tokenizer/metrics.json')); print({k: m[k] for k in ('step', 'psnr', 'ssim', 'codebook_usage')}, 'checker:', m.get('checker'))"
echo "== tokenizer ceiling (eval/recon.py, 512 held-out scenes)"
head -20 $out/recon/recon_metrics.md
if [ -f $out/tokenizer_ft/metrics.json ]; then
    echo "== the fine-tuned decoder (same codes): metrics.json, then eval/recon.py"
    $py -c "import json; m = json.load(open('$out/tokenizer_ft/metrics.json')); print({k: m[k] for k in ('step', 'psnr', 'ssim', 'codebook_usage')}, 'checker:', m.get('checker'))"
    head -20 $out/recon_ft/recon_metrics.md || true
fi
}
summary 2>&1 | tee $out/summary.txt   # the tables, also kept in a file
