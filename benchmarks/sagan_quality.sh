#!/usr/bin/env bash
# The class-conditional rows in docs/benchmarks.md (about 80 minutes on 2 CPU cores):
#  1. Fashion-MNIST at 32px, 20 minutes each: sagan (class-conditional: the data has labels) and dcgan
#     --class-conditional, each alone on the machine (2 threads, as the other Fashion-MNIST rows), then side by
#     side on one thread each (`-1thread` rows, the same budget and load for both); FID, and class accuracy by
#     the domain classifier (1,000 samples per class); the classifier's own per-class accuracy on the real test
#     images (`class-floor`) for scale. SAGAN's CPU preset was chosen on this data.
#  2. Held out (nothing was chosen on it): sagan on emoji at 32px, 20 minutes, conditional on its Unicode groups
#     (class accuracy by the emoji classifier), beside sagan on a folder of class subfolders made from
#     Fashion-MNIST's test images (5 classes named as the classifier names them), 10 minutes, then sampled by
#     class name.
set -euo pipefail
PY=${PY:-.venv/bin/python}
GF=${GF:-$(dirname "$PY")/ganforge}
$PY benchmarks/quality.py --which sagan --minutes 20
$PY benchmarks/quality.py --which dcgan --minutes 20 --set arch.num_classes=-1 --tag-suffix=-cond
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which sagan --minutes 20 --tag sagan-1thread &
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which dcgan --minutes 20 --set arch.num_classes=-1 --tag dcgan-cond-1thread &
wait
$PY benchmarks/quality.py --which class-floor
folder=runs/fashion-classes
[ -d "$folder" ] || $PY benchmarks/class_folder.py "$folder"
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which sagan --data emoji --resolution 32 --minutes 20 --n 1870 &
OMP_NUM_THREADS=1 $PY benchmarks/quality.py --which sagan --data "$folder" --resolution 32 --minutes 10 --n 5000 \
    --extractor fashion-mnist-classifier --tag sagan@fashion-classes-folder &
wait
run=$(ls -d runs/quality-sagan-sagan@fashion-classes-folder-* | tail -1)
for cls in Sneaker Bag "Ankle boot"; do
    $GF sample "$run" --n 16 --class "$cls" --grid --out "$run/class-$(echo "$cls" | tr ' ' -)" --force
done
$PY benchmarks/report.py
