"""Data parallelism on this machine: one process against `torchrun --nproc_per_node=2` (gloo), same model and data.

    python benchmarks/dist_scaling.py [--models dcgan,stylegan2] [--steps 120] [--json docs/results/dist.json]

For each model, three runs on Fashion-MNIST (ganforge's CPU preset, 32px), each the only work on the machine:
- 1 process, both cores (OMP_NUM_THREADS=2), batch B;
- 2 processes, one core each, batch B/2 per process: the same global batch B, so the same training;
- 2 processes, one core each, batch B per process: global batch 2B (what a user who keeps the per-process
  batch gets).
Throughput is the images per second the run logs (rank 0 counts the global batch), averaged over the log
intervals after the first (warm-up). Efficiency: the 2-process figure over the 1-process one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import merge_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(model: str, procs: int, batch: int, steps: int, threads: int, out: Path) -> float:
    base = ["-m", "ganforge", "train", model, "--data", "fashion-mnist", "--steps", str(steps), "--batch-size",
            str(batch), "--out", str(out), "--quiet", "--set", "train.log_every=10", "--set", "train.sample_every=0",
            "--set", f"train.checkpoint_every={steps}"]
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
                                 if procs > 1 else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(launch + base, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["img_per_s"] for r in rows if "img_per_s" in r][1:]  # the first interval holds the warm-up
    return sum(rates) / len(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="dcgan,stylegan2")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "dist.json")
    args = ap.parse_args()
    import torch

    for model in args.models.split(","):
        b = args.batch_size
        with tempfile.TemporaryDirectory() as tmp:
            one = run(model, 1, b, args.steps, 2, Path(tmp) / "one")
            same = run(model, 2, b // 2, args.steps, 1, Path(tmp) / "same")
            double = run(model, 2, b, args.steps, 1, Path(tmp) / "double")
        entry = {"model": model, "batch": b, "steps": args.steps, "cpus": os.cpu_count(),
                 "img_s_1proc_2threads": round(one, 1), "img_s_2proc_same_global": round(same, 1),
                 "img_s_2proc_double_global": round(double, 1),
                 "efficiency_same_global": round(same / one, 3), "efficiency_double_global": round(double / one, 3),
                 "command": " ".join(["python", "benchmarks/dist_scaling.py", *sys.argv[1:]]),
                 "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
        merge_result(args.json, model, entry)
        print(f"{model:10s} 1 process x 2 threads: {one:7.1f} img/s | 2 processes, global batch {b}: {same:7.1f} "
              f"img/s ({same / one:.2f}x) | 2 processes, global batch {2 * b}: {double:7.1f} img/s "
              f"({double / one:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
