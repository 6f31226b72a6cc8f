#!/usr/bin/env bash
# The GPU checks, as one prepared script for a lent CUDA machine (see the device tool). Not part of CI.
# Expects Fashion-MNIST's IDX files in .gpucheck/data/fashion-mnist (copied there by the caller) and
# writes its logs and pictures to $OUT.
set -uo pipefail
# Steps to run: all by default, or some, e.g. `STEPS="5 7" bash scripts/gpu_check.sh` (one device call is at most
# 10 minutes; the whole script takes longer, so a session may run it in two calls).
STEPS=${STEPS:-1 2 3 4 5 6 7}
want() { [[ " $STEPS " == *" $1 "* ]]; }
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 GANFORGE_DATA=$PWD/.gpucheck/data
OUT=${OUT:-/tmp/gpucheck}; mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
if want 1; then
echo "== 1. fast test suite with CUDA present (train() picks the GPU; CUDA resume test runs)"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests 2>&1 | tail -15 | tee "$OUT/pytest.log"
fi
if want 2; then
echo "== 2. speed on the GPU: ganforge vs the plain loop"
timeout 100 python3 -m ganforge bench --device cuda --models dcgan,gan --batch-size 64 --blocks 5 --steps 20
timeout 100 python3 -m ganforge bench --device cuda --models dcgan --resolution 64 --batch-size 128 --blocks 5 --steps 20
fi
if want 3; then
echo "== 3. DCGAN on real Fashion-MNIST for 1.5 minutes on the GPU, then sample"
timeout 150 python3 -m ganforge.cli train dcgan --data fashion-mnist --minutes 1.5 --steps 1000000 --out /tmp/g1 --quiet \
  --checkpoint-every 2000 --sample-every 1000 && tail -2 /tmp/g1/metrics.jsonl
cp /tmp/g1/samples/progress.gif "$OUT/gpu-progress.gif" 2>/dev/null
ls /tmp/g1/samples | tail -1 | xargs -I{} cp /tmp/g1/samples/{} "$OUT/gpu-final.png"
fi
if want 4; then
echo "== 4. progan at 128px on emoji for 3 minutes, bf16, the paper's network (no CPU preset on a GPU):"
echo "      img/s per resolution from metrics.jsonl (needs fonts-noto-color-emoji and unicode-data, or a"
echo "      rendered emoji-128 folder in \$GANFORGE_DATA)"
timeout 260 python3 -m ganforge.cli train progan --data emoji --resolution 128 --minutes 3 --out /tmp/g2 --quiet \
  --set recipe.stable_kimg=20 --set recipe.fade_kimg=20 --checkpoint-every 100000 --sample-every 500 && \
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("/tmp/g2/metrics.jsonl") if '"img_per_s"' in l]
by = {}
for r in rows:
    by.setdefault((r["resolution"], r["alpha"] < 1), []).append(r["img_per_s"])
for (res, fading), v in sorted(by.items()):
    print(f"progan {res}px{' fading in' if fading else ''}: median {sorted(v)[len(v) // 2]:.0f} img/s "
          f"over {len(v)} log intervals")
PY
cp /tmp/g2/samples/progress.gif "$OUT/gpu-progan-progress.gif" 2>/dev/null
fi
if want 5; then
echo "== 5. stylegan2 at 128px, batch 32, bf16, the paper's config-F widths (512 channels up to 64px):"
echo "      seconds per 1000 images (sec/kimg) of ganforge's step against the plain ports' loop (fp32, grouped"
echo "      modulated convs); NVlabs' anchor: 12.8-13.7 sec/kimg on one V100 at 128px"
timeout 200 python3 -m ganforge bench --device cuda --models stylegan2 --resolution 128 --channels 3 \
  --batch-size 32 --blocks 3 --steps 16 --set arch.channel_base=32768 --set arch.channel_max=512 \
  --json "$OUT/speed-stylegan2.json" && python3 - "$OUT/speed-stylegan2.json" <<'PY'
import json, sys
for key, r in json.load(open(sys.argv[1])).items():
    if "stylegan2" in key:
        print(f"{key}: ganforge {1000 / r['ganforge_img_s']:.2f} sec/kimg, plain {1000 / r['plain_img_s']:.2f} sec/kimg")
PY
fi
if want 6; then
echo "== 6. torchrun over every GPU here (NCCL): DCGAN for 300 steps; img/s and the ranks' bit-identity check"
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  timeout 200 torchrun --standalone --nproc_per_node="$NGPU" -m ganforge train dcgan --data fashion-mnist --steps 300 \
    --batch-size 64 --out /tmp/g3 --quiet --checkpoint-every 300 --sample-every 0 && \
  grep -E '"img_per_s"|weights_identical' /tmp/g3/metrics.jsonl | tail -3
else
  echo "one GPU: torchrun over GPUs needs two or more (the 2-process CPU test covers the logic)"
fi
fi
if want 7; then
echo "== 7. torch.compile on the GPU, each model: the step compiled (G and D, penalties eager) against the same"
echo "      step eager, and the compile time with a cold cache; train.compile=auto compiles nothing on a GPU until"
echo "      these rows say where it wins (ganforge/train/compile.py, AUTO)"
timeout 360 python3 benchmarks/compile_speed.py --device cuda --which all --blocks 3 --steps 16 \
  --models gan,dcgan,pix2pix,progan,stylegan,stylegan2,stylegan2@64 --json "$OUT/compile-gpu.json"
timeout 60 python3 benchmarks/compile_speed.py --device cuda --which G --blocks 3 --steps 16 --models sagan \
  --json "$OUT/compile-gpu.json"  # sagan's spectrally normalised D is not compiled
fi
