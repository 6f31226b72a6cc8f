"""Quality at a budget on real Fashion-MNIST: ganforge's models against the plain loop (benchmarks/plain_loop.py)
after the same wall time, measured with ganforge's own evaluation (torch-fidelity on the domain classifier's
features; FID, KID, precision/recall; 10k samples against the 10k test images) plus the samples' class histogram.

    python benchmarks/quality.py --which floor,dcgan,gan,plain --minutes 10
    python benchmarks/quality.py --which dcgan --steps 2000 --set train.precision=fp32 --tag fp32-2000
    python benchmarks/quality.py --measure runs/quality-dcgan-... --tag dcgan      # re-measure a finished run

Each entry is merged into docs/results/quality.json under its tag; benchmarks/report.py renders
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
from ganforge.metrics.domain import class_histogram, classify
from ganforge.metrics.evaluate import ImageSet, evaluate, load_image_set, to_uint8
from ganforge.train.loop import train
from ganforge.viz import build_progress_gif, save_grid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain_loop import PlainLoop  # noqa: E402
from results_file import merge_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "quality.json"
IMAGES = ROOT / "docs" / "images"
DATASET = "fashion-mnist"


def measure(fake: torch.Tensor, reference: ImageSet, what: str) -> dict:
    """fake: [N, 1, H, W] in [-1, 1]."""
    res = evaluate(ImageSet(to_uint8(fake, what), what, DATASET), reference, ("fid", "kid", "pr"))
    _, logits = classify(fake, DATASET)
    return {"fid": round(res["fid"], 4), "kid": round(res["kid"]["mean"], 5), "kid_std": round(res["kid"]["std"], 5),
            "precision": round(res["precision"], 4), "recall": round(res["recall"], 4), **class_histogram(logits),
            "extractor": res["extractor"], "reference": res["reference"], "n_fake": res["n_fake"],
            "n_real": res["n_real"]}


def train_ganforge(model: str, args) -> tuple[Path, int]:
    layers = [{"data": {"name": DATASET}, "train": {"steps": args.steps, "minutes": 0 if args.steps else args.minutes}},
              C.parse_set(args.set)]
    cfg = C.resolve(model, layers)
    run = args.runs / f"quality-{model}-{args.tag or 'default'}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, run, progress=False)
    return run, result["step"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--which", default="floor,dcgan,gan,plain")
    ap.add_argument("--measure", type=Path, help="measure this finished run instead of training")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead of wall time (ganforge models)")
    ap.add_argument("--n", type=int, default=10000, help="samples per set (and test images)")
    ap.add_argument("--set", action="append", default=[], help="config overrides for the ganforge runs")
    ap.add_argument("--tag", default="")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    args = ap.parse_args()
    reference = load_image_set(DATASET, n=args.n, split="test")
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    todo = ["measure"] if args.measure else args.which.split(",")
    for which in todo:
        t0 = time.time()
        if which == "floor":
            tr = load_data(DATASET, 32, "train")
            idx = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))[: args.n]
            entry = {"what": "real train vs real test (the floor)", **measure(tr.batch(idx), reference, "train")}
        elif which in ("dcgan", "gan", "measure"):
            if which == "measure":
                run, steps = args.measure, ganforge.load(args.measure).step
                model = ganforge.load(run).cfg.model
            else:
                run, steps = train_ganforge(which, args)
                model = which
            fake = ganforge.load(run).sample(args.n, seed=0)
            tag = args.tag or model
            # the README shows the default runs' grids; a tagged run keeps its grid in its run directory
            save_grid(fake[:64], IMAGES / f"{model}-fashion.png" if tag == model else run / "quality-grid.png", nrow=8)
            entry = {"what": f"ganforge {model}, {budget}" + (f" ({' '.join(args.set)})" if args.set else ""),
                     "steps": steps, "run": str(run), **measure(fake, reference, "samples")}
            if tag == model and model == "dcgan":  # the README's film: a small copy (14 frames, half size)
                build_progress_gif(run / "samples", max_frames=14, out=IMAGES / f"{model}-fashion-progress.gif",
                                   shrink=2)
            which = tag
        elif which == "plain":
            tr = load_data(DATASET, 32, "train")
            loop = PlainLoop("dcgan", 32, 1, 64)
            steps = loop.train_for(tr.images, args.minutes)
            out = args.runs / f"quality-plain-{time.strftime('%Y%m%d-%H%M%S')}.pt"
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"G": loop.G.state_dict(), "steps": steps}, out)
            fake = loop.sample(args.n, seed=0)
            save_grid(fake[:64], IMAGES / "plain-dcgan-fashion.png", nrow=8)
            entry = {"what": f"plain PyTorch DCGAN loop (benchmarks/plain_loop.py), {budget}", "steps": steps,
                     "run": str(out), **measure(fake, reference, "plain samples")}
        else:
            raise SystemExit(f"unknown --which {which}")
        entry.update(seconds=round(time.time() - t0), torch=torch.__version__, date=time.strftime("%Y-%m-%d"),
                     threads=torch.get_num_threads())
        merge_result(RESULTS, which, entry)
        print(json.dumps({which: entry}), flush=True)


if __name__ == "__main__":
    main()
