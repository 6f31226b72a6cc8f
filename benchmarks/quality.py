"""Quality at a budget: ganforge's DCGAN against the plain loop (benchmarks/plain_loop.py) after the same
wall time on real Fashion-MNIST, measured in the domain classifier's feature space.

    python benchmarks/quality.py --which ganforge,plain,floor --minutes 10
    python benchmarks/quality.py --which ganforge --steps 2000 --set train.precision=fp32 --tag fp32-2000

Each measured entry is merged into docs/results/quality.json under its tag; benchmarks/report.py renders
docs/benchmarks.md from it. Sample grids go to docs/images/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import ganforge
from ganforge import config as C
from ganforge.data import load_data
from ganforge.metrics.domain import class_histogram, classify, frechet_distance
from ganforge.train.loop import train
from ganforge.viz import save_grid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain_loop import PlainLoop  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "quality.json"
IMAGES = ROOT / "docs" / "images"


def measure(fake: torch.Tensor, real_feats: torch.Tensor, dataset: str) -> dict:
    feats, logits = classify(fake, dataset)
    return {"fid_domain": round(frechet_distance(real_feats, feats), 3), **class_histogram(logits)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--which", default="ganforge,plain,floor")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead of wall time (ganforge only)")
    ap.add_argument("--n", type=int, default=10000, help="samples per FID (against as many test images)")
    ap.add_argument("--set", action="append", default=[], help="config overrides for the ganforge run")
    ap.add_argument("--tag", default="")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    args = ap.parse_args()
    dataset = "fashion-mnist"
    test = load_data(dataset, 32, "test")
    real_feats, _ = classify(test.batch(torch.arange(min(args.n, len(test)))), dataset)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    for which in args.which.split(","):
        t0 = time.time()
        if which == "floor":
            tr = load_data(dataset, 32, "train")
            idx = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))[: args.n]
            entry = {"what": "real train vs real test (the floor)", **measure(tr.batch(idx), real_feats, dataset)}
        elif which == "ganforge":
            layers = [{"data": {"name": dataset}, "train": {"steps": args.steps,
                                                            "minutes": 0 if args.steps else args.minutes}},
                      C.parse_set(args.set)]
            cfg = C.resolve("dcgan", layers)
            run = args.runs / f"quality-{args.tag or 'ganforge'}-{time.strftime('%Y%m%d-%H%M%S')}"
            result = train(cfg, run, progress=False)
            G = ganforge.load(run)
            fake = G.sample(args.n, seed=0)
            save_grid(fake[:64], IMAGES / f"dcgan-fashion-{args.tag or 'ganforge'}.png", nrow=8)
            entry = {"what": f"ganforge dcgan, {budget}" + (f" ({' '.join(args.set)})" if args.set else ""),
                     "steps": result["step"], "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
                     **measure(fake, real_feats, dataset)}
            if not args.steps and not args.set:
                import shutil

                shutil.copy(run / "samples" / "progress.gif", IMAGES / "dcgan-fashion-progress.gif")
        elif which == "plain":
            tr = load_data(dataset, 32, "train")
            loop = PlainLoop("dcgan", 32, 1, 64)
            steps = loop.train_for(tr.images, args.minutes)
            fake = loop.sample(args.n, seed=0)
            save_grid(fake[:64], IMAGES / "plain-dcgan-fashion.png", nrow=8)
            entry = {"what": f"plain PyTorch loop (benchmarks/plain_loop.py), {budget}", "steps": steps,
                     **measure(fake, real_feats, dataset)}
        else:
            raise SystemExit(f"unknown --which {which}")
        entry.update(seconds=round(time.time() - t0), n=args.n, extractor="fashion-mnist-classifier (128-d)",
                     reference=f"fashion-mnist test, {min(args.n, len(test))} images", torch=torch.__version__,
                     date=time.strftime("%Y-%m-%d"))
        key = which + (f"-{args.tag}" if args.tag and which == "ganforge" else "")
        results[key] = entry
        print(json.dumps({key: entry}), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
