#!/usr/bin/env bash
# The reproduction on a lent GPU machine (one H100, 16 cores), in one go:
#   benches/device/reproduce_gpu.sh WHEEL [JOBS] [TRAIN_SECONDS]
# installs the grokspec wheel, trains every experiment of `--scale gpu`
# (one seed-batched process per experiment, JOBS at once, default 10), builds
# the report there too (best effort), and packs every run's metrics.jsonl and
# config.json, plan.json and the report into $OUT/repro.tar.gz. The runs
# live outside $OUT (only a few files come back from it); the report can be
# rebuilt anywhere from the tarball:
#   tar xzf repro.tar.gz -C DIR && grokspec reproduce --out DIR --analyse-only
# Training stops after TRAIN_SECONDS (default 300) even if unfinished: the
# metrics written so far are kept, and the report marks runs cut short.
# WHEEL "none" skips the install (grokspec already importable); REPRO_SCALE
# and REPRO_DEVICE (default gpu and cuda) let a CPU try the script on
# `--scale smoke`.
set -u
WHEEL=${1:?usage: reproduce_gpu.sh WHEEL [JOBS] [TRAIN_SECONDS]}
JOBS=${2:-10}
TRAIN_SECONDS=${3:-300}
SCALE=${REPRO_SCALE:-gpu}
DEVICE=${REPRO_DEVICE:-cuda}
OUT=${OUT:-$PWD/out}
WORK=${REPRO_DIR:-/tmp/grokspec-repro}
mkdir -p "$OUT" "$WORK"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

if [ "$WHEEL" != none ]; then
  stamp "installing $WHEEL"
  pip install --no-deps --no-index --force-reinstall "$WHEEL" >"$OUT/pip.log" 2>&1 || { cat "$OUT/pip.log"; exit 2; }
fi
python -c 'import torch, grokspec; print("grokspec", grokspec.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

stamp "training (jobs $JOBS, at most $TRAIN_SECONDS s)"
start=$(date +%s)
timeout -s INT -k 20 "$TRAIN_SECONDS" grokspec reproduce --scale "$SCALE" --out "$WORK" --jobs "$JOBS" --device "$DEVICE" --train-only 2>&1 | tee "$OUT/train.log"
stamp "training ended (status ${PIPESTATUS[0]}) after $(( $(date +%s) - start )) s"

stamp "analysis"
timeout -k 10 90 grokspec reproduce --out "$WORK" --analyse-only --quiet >"$OUT/analysis.log" 2>&1
stamp "analysis ended (status $?)"; tail -5 "$OUT/analysis.log"

stamp "packing"
(cd "$WORK" && find . \( -name metrics.jsonl -o -name config.json -o -name plan.json -o -name 'report.*' -o -name 'fig_*.png' \) -print0 \
  | tar czf "$OUT/repro.tar.gz" --null -T -)
ls -l "$OUT/repro.tar.gz"
stamp "done after $(( $(date +%s) - start )) s"
