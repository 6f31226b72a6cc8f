#!/usr/bin/env bash
# The style-based GANs' quality rows in docs/benchmarks.md (about 55 minutes on 2 CPU cores):
#  1. emoji at 64px, 30 minutes: stylegan2 and stylegan side by side, one thread each (`OMP_NUM_THREADS=1`), as
#     the progan and dcgan emoji rows of `make bench-progan` ran, so all four had the same budget and load;
#  2. Fashion-MNIST at 32px, 10 minutes each, alone on the machine (as the progan and dcgan rows).
# The CPU preset's R1 weight was chosen on Fashion-MNIST (the "tuning" rows: r1_gamma 10 against 0.05, side by
# side); its dropping of style mixing and path length on emoji (10 minutes, side by side), confirmed on the
# held-out folder runs/emoji-variants (docs/benchmarks.md, the "tuning" and "held out" rows).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which stylegan2 --data emoji --resolution 64 --minutes 30 --n 1870 &
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which stylegan --data emoji --resolution 64 --minutes 30 --n 1870 &
wait
$PY benchmarks/quality.py --which stylegan2 --resolution 32 --minutes 10
$PY benchmarks/quality.py --which stylegan --resolution 32 --minutes 10
$PY benchmarks/report.py
