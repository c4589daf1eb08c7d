#!/usr/bin/env bash
# Everything grokspec measures on a lent GPU machine, sized for one session's
# 15 minutes of device time (two calls on the same warm machine):
#   call 1:  OUT=out bash benches/device/run_all.sh          (CALL_SECONDS, default 530)
#     1. seed-runs per minute of seed-batched training (alone on the GPU),
#     2. the engine's GPU path against torch.linalg (alone on the GPU; the
#        7B-shaped scan only with GPU_SCAN=1, it was measured before),
#     3. the paper-scale main experiment (benches/device/paper_main.sh), started
#        in its own process session so it outlives this call while the machine
#        is held; what it has written is packed when the call ends.
#   call 2, at once:  OUT=out bash benches/device/collect.sh SECONDS
#     waits for the main experiment (at most SECONDS) and packs it again.
# The wheel in .whl/ provides the compiled engine; the Python package runs from
# this checkout (PYTHONPATH), so Python changes need no rebuild.
set -uo pipefail
OUT=${OUT:?set OUT}
CALL_SECONDS=${CALL_SECONDS:-530}
RES=/tmp/grokspec-results
started=$(date +%s)
mkdir -p "$OUT" "$RES"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

source benches/device/setup.sh
nvidia-smi -L; lscpu | grep -E "Model name" | cut -c1-200
python3 -c "import grokspec, torch; print('grokspec', grokspec.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

stamp "1. training throughput"
timeout 110 python3 benches/device/train_throughput.py "$RES" --device "${DEVICE:-cuda}" --seeds "${THROUGHPUT_SEEDS:-1,10,50,100}" --steps "${THROUGHPUT_STEPS:-300}"
stamp "2. GPU engine benchmark"
scan_flag=--no-scan; [ "${GPU_SCAN:-0}" = 1 ] && scan_flag=""
timeout 150 python3 benches/device/gpu_bench.py "$RES/gpu" $scan_flag
cp "$RES"/train_throughput.json "$RES"/gpu/gpu_bench.json "$RES"/gpu/gpu_bench.md "$OUT"/ 2>/dev/null

stamp "3. paper-scale main experiment (in the background, own session)"
mkdir -p /tmp/paper
setsid nohup bash benches/device/paper_main.sh /tmp/paper "${PAPER_SECONDS:-900}" >/tmp/paper/main.log 2>&1 </dev/null &
deadline=$((started + CALL_SECONDS))
while [ "$(date +%s)" -lt "$deadline" ] && ! grep -q "paper_main: finished" /tmp/paper/main.log 2>/dev/null; do sleep 5; done
bash benches/device/pack.sh
stamp "done after $(( $(date +%s) - started )) s"
