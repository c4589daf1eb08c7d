#!/usr/bin/env bash
# Packs the main experiment's metrics, configs and logs (not its checkpoints)
# from /tmp/paper into $OUT/paper.tar.gz, with the last lines of each log.
set -uo pipefail
OUT=${OUT:?set OUT}; mkdir -p "$OUT"
(cd /tmp/paper && find . \( -name metrics.jsonl -o -name config.json -o -name '*.log' \) -print0 | tar czf "$OUT/paper.tar.gz" --null -T -)
for log in /tmp/paper/*.log; do echo "== $log"; tail -2 "$log"; done
find /tmp/paper -name metrics.jsonl | wc -l | xargs echo "runs with metrics:"
ls -l "$OUT"
