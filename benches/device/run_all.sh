#!/usr/bin/env bash
# Everything grokspec measures on a lent GPU machine, in one call (≈ 9 minutes):
#   1. seed-runs per minute of seed-batched training (alone on the GPU),
#   2. the engine's GPU path against torch.linalg (alone on the GPU),
#   3. the reproduction (--scale cpu, seed-batched, 10 jobs) and the paper-scale
#      main experiment, side by side.
# Usage (from the repository root, with a built wheel in .whl/):
#   OUT=out bash benches/device/run_all.sh
# The wheel provides the compiled engine; the Python package runs from this
# checkout (PYTHONPATH), so Python changes need no rebuild. Everything that
# comes back is packed into $OUT/results.tar.gz, plus the small JSON files.
set -uo pipefail
OUT=${OUT:?set OUT}
RES=/tmp/grokspec-results
mkdir -p "$OUT" "$RES"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

wheel=$(ls .whl/*.whl | head -1)
mkdir -p /tmp/wheel && python3 -m zipfile -e "$wheel" /tmp/wheel
cp /tmp/wheel/grokspec/_core*.so python/grokspec/
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m grokspec.cli "$@"\n' >/tmp/bin/grokspec && chmod +x /tmp/bin/grokspec
export PATH=/tmp/bin:$PATH
nvidia-smi -L; lscpu | grep -E "Model name|Flags" | cut -c1-200
python3 -c "import grokspec, torch; print('grokspec', grokspec.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"

stamp "1. training throughput"
timeout 100 python3 benches/device/train_throughput.py "$RES" --device cuda --seeds 1,10,50 --steps 300
stamp "2. GPU engine benchmark"
timeout 130 python3 benches/device/gpu_bench.py "$RES/gpu" --layers 2
cp "$RES"/train_throughput.json "$RES"/gpu/gpu_bench.json "$RES"/gpu/gpu_bench.md "$OUT"/ 2>/dev/null

stamp "3. reproduction and paper-scale main experiment"
OUT="$RES/repro" REPRO_DIR=/tmp/repro bash benches/device/reproduce_gpu.sh none 10 "${TRAIN_SECONDS:-260}" >"$RES/repro.log" 2>&1 &
repro=$!
bash benches/device/paper_main.sh /tmp/paper "${PAPER_SECONDS:-330}" >"$RES/paper.log" 2>&1
wait $repro
tail -3 "$RES/repro.log"; tail -2 "$RES/paper.log"
(cd /tmp/paper && find . \( -name metrics.jsonl -o -name config.json -o -name '*.log' \) -print0 | tar czf "$RES/paper.tar.gz" --null -T -)
stamp "packing"
tar czf "$OUT/results.tar.gz" -C "$RES" .
ls -l "$OUT"
stamp "done"
