#!/usr/bin/env bash
# The pix2pix rows in docs/benchmarks.md (about 35 minutes on 2 CPU cores): pix2pix against the same U-Net
# trained on L1 alone (the paper's ablation), each 15 minutes, side by side on one thread each (the same
# budget and load for both), on edges2fashion (32px; where pix2pix's CPU preset was chosen) and then on
# gray2emoji (64px colourisation; held out: nothing was chosen on it). Each pair of runs is judged on its
# held-out test pairs: L1 to the truth, FID/KID of the outputs against the truths (domain classifiers).
set -euo pipefail
PY=${PY:-.venv/bin/python}
MINUTES=${MINUTES:-15}
for data in edges2fashion gray2emoji; do
    OMP_NUM_THREADS=1 $PY benchmarks/translation.py train --data $data --variant pix2pix --minutes "$MINUTES" &
    OMP_NUM_THREADS=1 $PY benchmarks/translation.py train --data $data --variant l1 --minutes "$MINUTES" &
    wait
    $PY benchmarks/translation.py eval --data $data
done
$PY benchmarks/translation.py drawn
$PY benchmarks/report.py
