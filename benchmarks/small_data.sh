#!/usr/bin/env bash
# The small-data rows of docs/benchmarks.md, as they were run (about 45 minutes on 2 cores): settings compared
# on Fashion-MNIST classes 0-4 ("tune"), the conclusion checked once on classes 5-9 ("holdout"). Pairs run side
# by side, one core each, so the two settings share the machine alike.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DIR=${SMALL:-/tmp/ganforge-small}
$PY benchmarks/augment.py folders "$DIR"
$PY benchmarks/augment.py folders "$DIR" --per-class 200 --suffix=-1k
$PY benchmarks/augment.py folders "$DIR" --per-class 100 --suffix=-500
$PY benchmarks/augment.py run --data "$DIR/fm-a" --reference "$DIR/fm-a-test" --minutes 5 --tag tune \
  --configs none,diffaugment,ada
pair() {  # pair TAG DATA REFERENCE MINUTES [--grid-to-docs]: none and ada side by side
  for c in none ada; do
    OMP_NUM_THREADS=1 $PY benchmarks/augment.py run --data "$2" --reference "$3" --minutes "$4" --configs $c \
      --tag "$1" ${5:-} &
  done
  wait
}
pair tune-1k "$DIR/fm-a-1k" "$DIR/fm-a-test" 5
pair tune-500 "$DIR/fm-a-500" "$DIR/fm-a-test" 10 --grid-to-docs
pair holdout-1k "$DIR/fm-b-1k" "$DIR/fm-b-test" 5
$PY benchmarks/report.py
