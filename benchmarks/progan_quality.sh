#!/usr/bin/env bash
# Progressive GAN's quality rows in docs/benchmarks.md (about 60 minutes on 2 CPU cores):
#  1. emoji at 64px, 30 minutes: progan and dcgan side by side, one thread each (`OMP_NUM_THREADS=1`), so
#     both have the same machine under the same load;
#  2. Fashion-MNIST at 32px, 10 minutes, progan alone on the machine (dcgan's 10-minute row, also alone, is
#     `make bench-quality`'s);
#  3. a folder that is not the emoji dataset, 15 minutes, alone: the same font's emoji smaller, rotated, at
#     random places on pastel backgrounds, as JPEGs in one flat folder (scripts/make_emoji_variants.py),
#     measured with the emoji classifier's features against the folder's own images.
set -euo pipefail
PY=${PY:-.venv/bin/python}
VARIANTS=${VARIANTS:-runs/emoji-variants}
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which progan --data emoji --resolution 64 --minutes 30 --n 1870 &
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which dcgan --data emoji --resolution 64 --minutes 30 --n 1870 &
wait
$PY benchmarks/quality.py --which progan --resolution 32 --minutes 10
[ -d "$VARIANTS" ] || $PY scripts/make_emoji_variants.py --out "$VARIANTS" --size 64 --limit 1500
$PY benchmarks/quality.py --which progan --data "$VARIANTS" --resolution 64 --minutes 15 --n 1500 \
    --extractor emoji-classifier
$PY benchmarks/report.py
