#!/usr/bin/env bash
# The audio and video tokenizers on one GPU, side by side (<= 10 minutes): one video run and one
# audio run per variant, each capped at MINUTES of training, then a table of their held-out
# reconstruction metrics and prompt-checker accuracy (read from each run's metrics.json).
#   bash eval/gpu_modality_tokenizers.sh                       (outputs under runs/gpu_modalities)
#   AUDIO_VARIANTS="base=;stft=loss.stft_weight=1.0,loss.stft_log_floor=100" MINUTES=7 \
#       bash eval/gpu_modality_tokenizers.sh      one audio run per variant: name=overrides, the
#                                                 overrides comma-separated (no commas in values)
#   VIDEO=0 skips the video run; VIDEO_OVERRIDES="train.batch_size=64" overrides it.
# Prints the table last.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${RUN_DIR:-runs/gpu_modalities}   # RUN_DIR, not OUT: the GPU runner's own output folder is $OUT
minutes=${MINUTES:-4}
mkdir -p "$out"

. eval/background_jobs.sh   # run_in_background, wait_all
start() {  # start <name> <config> <overrides...>: one tokenizer training in the background
    local name=$1 config=$2
    shift 2
    run_in_background "$name" $py tokenizers/train_rdpm.py --config "$config" \
        "train.out_dir=$out/$name" "train.max_minutes=$minutes" train.overwrite=true "$@"
    echo "started $name: $config $*"
}

IFS=';' read -ra parts <<< "${AUDIO_VARIANTS:-base=}"
for part in "${parts[@]}"; do
    [ -z "$part" ] && continue
    IFS=',' read -ra words <<< "${part#*=}"
    start "audio_${part%%=*}" configs/rdpm_audio_gpu.yaml "${words[@]}"
done
if [ "${VIDEO:-1}" != 0 ]; then
    read -ra words <<< "${VIDEO_OVERRIDES:-}"
    start video configs/rdpm_video_gpu.yaml "${words[@]}"
fi

names=("${job_names[@]}")   # wait_all forgets them; the table below reads their runs
failed=0
wait_all || failed=1

$py - "$out" "${names[@]}" <<'EOF'
import json
import sys
from pathlib import Path

out, names = Path(sys.argv[1]), sys.argv[2:]
print("\n| run | steps | held-out quality | checker, whole prompt | per attribute |")
print("|---|---|---|---|---|")
for name in names:
    metrics_file = out / name / "metrics.json"
    if not metrics_file.is_file():
        print(f"| {name} | - | no metrics.json (see {out}/{name}.log) | | |")
        continue
    m = json.loads(metrics_file.read_text())
    log = [json.loads(x) for x in (out / name / "log.jsonl").read_text().splitlines()
           if x.startswith("{")] if (out / name / "log.jsonl").is_file() else []
    steps = max((r.get("step", 0) for r in log), default="?")
    if "snr_db" in m:
        quality = f"SNR {m['snr_db']:.2f} dB, MR-STFT {m.get('stft_distance', float('nan')):.3f}"
    else:
        quality = f"PSNR {m.get('psnr', float('nan')):.2f} dB, SSIM {m.get('ssim', float('nan')):.3f}"
    checker = m.get("checker", {})
    attributes = ", ".join(f"{k} {v:.1%}" for k, v in checker.items()
                           if "_" not in k and k != "prompt" and isinstance(v, float))
    prompt = f"{checker['prompt']:.1%}" if "prompt" in checker else "-"
    print(f"| {name} | {steps} | {quality} | {prompt} | {attributes} |")
EOF
exit $failed
