#!/usr/bin/env bash
# Out-of-sample check of the default alarm rule on one GPU: the rule was tuned
# on (a+b) mod 97 at train fraction 0.3 (docs/ALARMS.md); here it meets tasks
# and fractions it never saw, with negative controls on those tasks.
#   grokking candidates (10 seeds each, <= 30,000 steps, stop 500 after T_grok):
#     mul at 0.3, sub at 0.3, add at 0.2, S5 at 0.3
#   controls (10 seeds each, 12,000 steps, as the reproduction's controls):
#     mul at 0.3 with permuted training labels, sub at 0.3 without weight decay
# Set b (a second call): mul, sub and S5 at 0.2; controls: the MLP on mul at
# 0.3, S5 at 0.3 with permuted training labels, add at 0.2 without weight decay.
# Set c (fresh seeds, SEEDS=20-29): the alarm trade of docs/transfer — the
# default against the candidate (drop 0.02, lag 5, persist 3) — on runs neither
# was tuned on: add, mul, sub at 0.25; controls: each with permuted training
# labels at 0.25, and add at 0.25 without weight decay. With PAPER=1 the paper
# main experiment's modular tasks (benches/device/paper_main.sh, PAPER_S5=0)
# train beside it, into $OUT/paper.tar.gz.
# One seed-batched `grokspec train` process per experiment, all at once;
# evaluations every 100 steps (the interval the rule was tuned at).
# Usage: OUT=out bash benches/device/transfer.sh [a|b|c] [TIME_LIMIT_SECONDS]
# Sets a and c first measure the seed-batched training throughput (alone on the GPU).
set -uo pipefail
OUT=${OUT:?set OUT}
set_name=${1:-a}
limit=${2:-400}
runs=/tmp/transfer
mkdir -p "$OUT" "$runs"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
source benches/device/setup.sh
nvidia-smi -L; lscpu | grep -E "Model name" | cut -c1-200
python3 -c "import grokspec, torch; print('grokspec', grokspec.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if [ "$set_name" != b ]; then
stamp "1. training throughput (alone on the GPU)"
timeout 100 python3 benches/device/train_throughput.py "$runs" --device "${DEVICE:-cuda}" --seeds "${THROUGHPUT_SEEDS:-1,10,100}" --steps "${THROUGHPUT_STEPS:-300}"
cp "$runs/train_throughput.json" "$OUT/" 2>/dev/null
fi

stamp "2. transfer experiments, set $set_name, all at once, limit ${limit}s"
common=(--seeds "${SEEDS:-0-9}" --p 97 --eval-every 100 --checkpoint-every 1000000 --device "${DEVICE:-cuda}" --quiet)
train() { # NAME ARGS...
    local name=$1; shift
    timeout "$limit" grokspec train --out "$runs/$name" "${common[@]}" "$@" >"$runs/$name.log" 2>&1
    # Kept before the line below: its $(date) would reset $? to 0 (a cut run read "exit 0").
    local status=$?
    echo "[$(date -u +%H:%M:%S)] $name exit $status (124: cut by the time limit)" >>"$runs/status.log"
}
if [ "$set_name" = a ]; then
train mul-0.3 --task mul --train-fraction 0.3 --steps 30000 --stop-after-grok 500 &
train sub-0.3 --task sub --train-fraction 0.3 --steps 30000 --stop-after-grok 500 &
train add-0.2 --task add --train-fraction 0.2 --steps 30000 --stop-after-grok 500 &
train s5-0.3 --task s5 --train-fraction 0.3 --steps 30000 --stop-after-grok 500 &
train control-mul-shuffled --task mul --train-fraction 0.3 --steps 12000 --shuffle-labels train &
train control-sub-wd0 --task sub --train-fraction 0.3 --steps 12000 --weight-decay 0 &
elif [ "$set_name" = c ]; then
train add-0.25 --task add --train-fraction 0.25 --steps 30000 --stop-after-grok 500 &
train mul-0.25 --task mul --train-fraction 0.25 --steps 30000 --stop-after-grok 500 &
train sub-0.25 --task sub --train-fraction 0.25 --steps 30000 --stop-after-grok 500 &
train control-add-shuffled --task add --train-fraction 0.25 --steps 12000 --shuffle-labels train &
train control-mul-shuffled --task mul --train-fraction 0.25 --steps 12000 --shuffle-labels train &
train control-sub-shuffled --task sub --train-fraction 0.25 --steps 12000 --shuffle-labels train &
train control-add-wd0 --task add --train-fraction 0.25 --steps 12000 --weight-decay 0 &
if [ "${PAPER:-0}" = 1 ]; then
    mkdir -p /tmp/paper
    PAPER_S5=0 bash benches/device/paper_main.sh /tmp/paper "$limit" >/tmp/paper/main.log 2>&1 &
fi
else
train mul-0.2 --task mul --train-fraction 0.2 --steps 30000 --stop-after-grok 500 &
train sub-0.2 --task sub --train-fraction 0.2 --steps 30000 --stop-after-grok 500 &
train s5-0.2 --task s5 --train-fraction 0.2 --steps 30000 --stop-after-grok 500 &
train control-mul-mlp --task mul --train-fraction 0.3 --steps 12000 --model mlp &
train control-s5-shuffled --task s5 --train-fraction 0.3 --steps 12000 --shuffle-labels train &
train control-add-wd0 --task add --train-fraction 0.2 --steps 12000 --weight-decay 0 &
fi
wait
cat "$runs/status.log"
(cd "$runs" && find . \( -name metrics.jsonl -o -name config.json -o -name '*.log' \) -print0 | tar czf "$OUT/transfer-$set_name.tar.gz" --null -T -)
find "$runs" -name metrics.jsonl | wc -l | xargs echo "runs with metrics:"
if [ -f /tmp/paper/main.log ]; then cat /tmp/paper/main.log; bash benches/device/pack.sh; fi
stamp "done"
