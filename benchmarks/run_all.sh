#!/usr/bin/env bash
# Run every benchmark the data allows; append JSON lines to benchmarks/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin/her2dlr
DATA=${DATA:-../shared/data}
OUT=benchmarks/results.jsonl
run() { echo "# $*" >&2; "$BIN" bench "$@" | tee -a "$OUT"; }
run leakage
run gbsg2
run reference
run report
run deep-speed
if [ -d "$DATA/busi" ]; then
  run busi-qc --data "$DATA/busi"
  run clustered-ci --data "$DATA/busi"
  run extraction --data "$DATA/busi"
  run busi-radiomics --data "$DATA/busi"
  run busi-dlr --data "$DATA/busi"   # trains busi-deep's fold networks unless the work dir has them
  run busi-seg --data "$DATA/busi"
  run busi-autoroi --data "$DATA/busi"   # reuses busi-seg's out-of-fold masks from the work dir
fi
if [ -d "$DATA/breast-lesions-usg" ]; then
  run breast-usg --data "$DATA/breast-lesions-usg"
fi
if [ -d "$DATA/busi" ] && [ -d "$DATA/breast-lesions-usg" ]; then
  run external --train "$DATA/busi" --test "$DATA/breast-lesions-usg"
  run seg-external --train "$DATA/busi" --test "$DATA/breast-lesions-usg"
fi
