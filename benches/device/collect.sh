#!/usr/bin/env bash
# Second call on the same warm machine: waits for the main experiment started
# by run_all.sh (at most SECONDS) and packs it again into $OUT/paper.tar.gz.
# Usage: OUT=out bash benches/device/collect.sh SECONDS
set -uo pipefail
OUT=${OUT:?set OUT}
deadline=$(( $(date +%s) + ${1:?usage: collect.sh SECONDS} ))
while [ "$(date +%s)" -lt "$deadline" ] && ! grep -q "paper_main: finished" /tmp/paper/main.log 2>/dev/null; do sleep 5; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
bash benches/device/pack.sh
