#!/usr/bin/env bash
# The paper-scale reproduction's main experiment on a GPU: the transformer on
# (a+b), (a·b), (a−b) mod 97 and S5 (train fraction 0.1), 10 seeds each, the
# paper's budget (≤ 50,000 steps, evaluation every 200), stopping 3,000 steps
# after grokking. One seed-batched process per task, all four at once.
# Usage: benches/device/paper_main.sh OUT_DIR [TIME_LIMIT_SECONDS]
# Runs resume, so a run cut by the time limit continues when started again.
set -uo pipefail
out=${1:?usage: paper_main.sh OUT_DIR [TIME_LIMIT_SECONDS]}
limit=${2:-360}
mkdir -p "$out"
# PAPER_SEEDS, PAPER_STEPS and PAPER_DEVICE shrink it for a dry run on a CPU;
# PAPER_S5=0 leaves out S5 (its 50,000 steps are most of the experiment's time).
common=(--seeds "${PAPER_SEEDS:-0-9}" --p 97 --steps "${PAPER_STEPS:-50000}" --eval-every 200 --checkpoint-every 5000
        --stop-after-grok 3000 --device "${PAPER_DEVICE:-cuda}" --quiet)
pids=()
for task in add mul sub; do
    timeout "$limit" grokspec train --task "$task" --train-fraction 0.5 --out "$out/$task" "${common[@]}" \
        >"$out/$task.log" 2>&1 &
    pids+=($!)
done
if [ "${PAPER_S5:-1}" = 1 ]; then
    timeout "$limit" grokspec train --task s5 --train-fraction 0.1 --out "$out/s5" "${common[@]}" >"$out/s5.log" 2>&1 &
    pids+=($!)
fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
echo "paper_main: finished with status $status (124 = cut by the ${limit}s limit; the runs resume)"
