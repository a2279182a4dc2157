#!/usr/bin/env bash
# Multi-GPU pretraining on 2 GPUs of one host (<= 10 minutes), then one table:
#   1. scaling: eval/bench_pretrain.py on configs/uni_1b.yaml, 1 GPU (ZeRO 2) against 2 GPUs at
#      ZeRO 1, 2 and 3, same micro-batch per GPU (the 1-GPU run shares the machine with step 2's
#      data preparation on the other GPU);
#   2. a small real run on the shapes data (configs/uni_shapes_gpu.yaml, ZeRO 2, 2 GPUs): once
#      straight through, once with rank 1 killed (SIGKILL) at a random step and resumed with
#      --resume; the losses and data positions are compared;
#   3. the straight run's first checkpoint resumed on 1 GPU (universal checkpoint).
#   bash eval/gpu_multi_run.sh            (outputs under runs/gpu_multi)
#   DRY=1 bash eval/gpu_multi_run.sh      the same control flow on the CPU with tiny sizes (gloo)
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0). Prints the tables last (eval/multi_gpu_report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=runs/gpu_multi
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
ds() { $py -m deepspeed.launcher.runner --master_port $((29500 + RANDOM % 1000)) "$@"; }
stage() { echo "[$(date +%T)] $*"; }
if [ -n "${DRY:-}" ]; then  # CPU: tiny sizes, same steps
    export OMP_NUM_THREADS=1
    bench=(pretrain_config=configs/uni_tiny.yaml steps=4 warmup=1 window=1 text_vocab=1000)
    bench_over="data.seq_len=1024 data.blocks_per_image=2 data.rows_per_batch=1"
    tok=(--config configs/rdpm_tiny.yaml train.steps=20 train.device=cpu)
    enc=(data.num_samples=400 shard_size=100 device=cpu precision=fp32 data.num_workers=1)
    small=(model.backbone.hidden_size=64 model.backbone.num_layers=2 model.backbone.num_heads=2
           model.backbone.num_kv_heads=2 model.backbone.intermediate_size=128
           data.rows_per_batch=2 data.seq_len=512 data.num_workers=1 deepspeed.bf16.enabled=false)
    steps=8; every=3; kill_at=${KILL_AT:-4}; shards=3; gpu1=()
else
    # compile off: the same setting as README's 1-GPU table, and no minutes spent compiling
    bench=(pretrain_config=configs/uni_1b.yaml steps=8 warmup=2 window=2)
    bench_over="train.compile=false"
    tok=(--config configs/rdpm_shapes64_gpu.yaml train.steps=150 train.eval_images=64)
    enc=(data.num_samples=4000 shard_size=1000 device=cuda data.num_workers=8)
    small=(data.rows_per_batch=16 data.num_workers=2)
    # a random step strictly inside a checkpoint interval, so the resume redoes lost steps
    steps=40; every=10; kill_at=${KILL_AT:-$((10 * (1 + RANDOM % 2) + 2 + RANDOM % 6))}; shards=3; gpu1=(env CUDA_VISIBLE_DEVICES=1)
fi
mkdir -p $out
rm -f $out/scale_*.json $out/kill_step.txt
d=$out/data
rm -rf $out/one_gpu
stage "1 GPU (ZeRO 2), beside the shapes data preparation on the other GPU"
timeout 200 $py -m deepspeed.launcher.runner --master_port 29601 --num_gpus 1 eval/bench_pretrain.py "${bench[@]}" json=$out/scale_1gpu_zero2.json \
    "overrides=$bench_over train.ema_decay=0 deepspeed.zero_optimization.stage=2" > $out/scale_1gpu_zero2.log 2>&1 &
bench_pid=$!
(
    set -e
    "${gpu1[@]}" $py tokenizers/train_rdpm.py "${tok[@]}" train.out_dir=$d/tokenizer train.overwrite=true
    "${gpu1[@]}" $py tokenizers/encode.py tokenizer=$d/tokenizer/tokenizer out_dir=$d/codes \
        data.source=shapes data.image_size=64 batch_size=256 overwrite=true "${enc[@]}"
    mkdir -p $d/text
    $py -c "from unimodal.data.text_corpus import shapes_text_corpus; print('\n'.join(shapes_text_corpus(4000, seed=1)))" > $d/text/corpus.txt
    $py tokenizers/train_text.py "input=[$d/text/corpus.txt]" out=$d/text/text.model vocab_size=512
    $py tokenizers/encode_text.py "input=[$d/text/corpus.txt]" out_dir=$d/text_shards \
        text_tokenizer=$d/text/text.model shard_size=1000
) > $out/data_prep.log 2>&1 &
prep_pid=$!
wait $bench_pid || echo "1-GPU bench failed: see $out/scale_1gpu_zero2.log"
for stage_ in 1 2 3; do
    stage "2 GPUs, ZeRO $stage_"
    timeout 200 $py -m deepspeed.launcher.runner --master_port $((29610 + stage_)) --num_gpus 2 eval/bench_pretrain.py "${bench[@]}" json=$out/scale_2gpu_zero$stage_.json \
        "overrides=$bench_over train.ema_decay=0 deepspeed.zero_optimization.stage=$stage_" > $out/scale_2gpu_zero$stage_.log 2>&1 \
        || echo "2-GPU ZeRO $stage_ bench failed: see $out/scale_2gpu_zero$stage_.log"
done
wait $prep_pid || { echo "data preparation failed: see $out/data_prep.log"; exit 1; }

run=(--config configs/uni_shapes_gpu.yaml "${small[@]}" model.vocab.text_tokenizer=$d/text/text.model
     model.image_tokenizer=$d/tokenizer/tokenizer
     "data.sources.0.shards=$d/codes/shard-{000000..00000$shards}.tar"
     "data.sources.1.shards=$d/codes/shard-{000000..00000$shards}.tar"
     "data.sources.2.shards=$d/text_shards/shard-{000000..000003}.tar"
     train.steps=$steps train.checkpoint_every=$every train.log_every=1 train.export_every=0
     train.keep_checkpoints=10 deepspeed.zero_optimization.stage=2)
stage "2 GPUs straight through ($steps steps)"
ds --num_gpus 2 train/pretrain.py "${run[@]}" train.out_dir=$out/straight train.overwrite=true \
    > $out/straight.log 2>&1 || echo "straight run failed: see $out/straight.log"
stage "2 GPUs, rank 1 killed at step $kill_at"
ds --num_gpus 2 train/pretrain.py "${run[@]}" train.out_dir=$out/killed train.overwrite=true \
    > $out/killed.log 2>&1 &
launcher=$!
last_step() { tail -n 1 "$1" 2>/dev/null | $py -c "import json, sys; print(json.loads(sys.stdin.read())['step'])" 2>/dev/null || echo 0; }
while kill -0 $launcher 2>/dev/null && [ "$(last_step $out/killed/log.jsonl)" -lt "$kill_at" ]; do sleep 0.1; done
victim=$(pgrep -f -- "train/pretrain.py --local_rank=1 .*train.out_dir=$out/killed" | head -n 1 || true)
if [ -n "$victim" ]; then
    kill -9 "$victim"
    last_step $out/killed/log.jsonl > $out/kill_step.txt
    echo "killed rank 1 (pid $victim) after step $(cat $out/kill_step.txt)"
fi
wait $launcher && echo "the killed run exited 0 (was it killed?)" || echo "the killed run exited $?"
stage "resume on 2 GPUs"
ds --num_gpus 2 train/pretrain.py "${run[@]}" train.out_dir=$out/killed --resume \
    > $out/resumed.log 2>&1 || echo "resume failed: see $out/resumed.log"
stage "2 GPUs -> 1 GPU: resume step $every of the straight run"
# Gradient accumulation doubled: the same global batch, so the same schedule and step count.
"${gpu1[@]}" $py train/pretrain.py "${run[@]}" train.gradient_accumulation=2 train.out_dir=$out/one_gpu \
    --resume $out/straight/checkpoints/step_$(printf %08d $every) > $out/one_gpu.log 2>&1 \
    || echo "1-GPU resume failed: see $out/one_gpu.log"
stage done
$py eval/multi_gpu_report.py run_dir=$out
