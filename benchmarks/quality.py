"""Quality at a budget on real data: ganforge's models against the plain loop (benchmarks/plain_loop.py)
after the same wall time, measured with ganforge's own evaluation (torch-fidelity on a domain classifier's
features; FID, KID, precision/recall; on Fashion-MNIST 10k samples against the 10k test images) plus the
samples' class histogram where the extractor is a classifier.

    python benchmarks/quality.py --which floor,dcgan,gan,plain --minutes 10
    python benchmarks/quality.py --which dcgan --steps 2000 --set train.precision=fp32 --tag fp32-2000
    python benchmarks/quality.py --measure runs/quality-dcgan-... --tag dcgan      # re-measure a finished run
    python benchmarks/quality.py --which progan,dcgan --data emoji --resolution 64 --minutes 30 --n 1870
    python benchmarks/quality.py --which progan --data FOLDER --resolution 64 --extractor emoji-classifier
    python benchmarks/quality.py --which sagan --minutes 20     # class-conditional: adds class accuracy

Data other than Fashion-MNIST has no test split: samples are compared with the training images (all of them,
or --n), and rows are keyed MODEL@DATA (e.g. progan@emoji-64) unless --tag names them.

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
from ganforge.metrics.domain import class_accuracy, class_histogram, classify
from ganforge.metrics.extractors import DOMAIN
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


def measure(fake: torch.Tensor, reference: ImageSet, what: str, data: str = DATASET, extractor: str | None = None
            ) -> dict:
    """fake: [N, C, H, W] in [-1, 1]."""
    from ganforge.metrics.extractors import DOMAIN

    res = evaluate(ImageSet(to_uint8(fake, what), what, data), reference, ("fid", "kid", "pr"), extractor,
                   kid_subset_size=min(1000, len(fake) // 2))
    hist = {}
    if res["extractor"] in DOMAIN:
        _, logits = classify(fake, DOMAIN[res["extractor"]])
        hist = class_histogram(logits)
    return {"fid": round(res["fid"], 4), "kid": round(res["kid"]["mean"], 5), "kid_std": round(res["kid"]["std"], 5),
            "precision": round(res["precision"], 4), "recall": round(res["recall"], 4), **hist,
            "extractor": res["extractor"], "reference": res["reference"], "n_fake": res["n_fake"],
            "n_real": res["n_real"]}


def train_ganforge(model: str, args) -> tuple[Path, int]:
    data = {"name": args.data, **({"resolution": args.resolution} if args.resolution else {})}
    layers = [{"data": data, "train": {"steps": args.steps, "minutes": 0 if args.steps else args.minutes}},
              C.parse_set(args.set)]
    cfg = C.resolve(model, layers)
    run = args.runs / f"quality-{model}-{args.tag or _slug(args)}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train(cfg, run, progress=False)
    if result["stopped_by"] not in ("minutes", "steps"):  # a row must have had its whole budget
        raise SystemExit(f"{run} stopped early ({result['stopped_by']}); no row written")
    return run, result["step"]


def run_facts(run: Path) -> dict:
    """Images shown, the resolution, and (for a growing model) the stage the run ended at."""
    from ganforge.train.checkpoint import read_header, resolve_checkpoint

    header = read_header(resolve_checkpoint(run))
    gen = ganforge.load(run)
    out = {"nimg": header.get("nimg"), "data": gen.cfg.data.name, "resolution": gen.resolution,
           "params_g": sum(p.numel() for p in gen.net.parameters())}
    if hasattr(gen.net, "growth"):
        out["stage"] = list(gen.net.growth)
        out["img_per_s_by_stage"] = stage_speeds(run)
    return out


def stage_speeds(run: Path) -> dict:
    """Median img/s of a growing run's log intervals, per stage ("32" stable, "32 fade")."""
    by: dict[str, list[float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "img_per_s" in r and "resolution" in r:
            by.setdefault(f"{r['resolution']}{' fade' if r['alpha'] < 1 else ''}", []).append(r["img_per_s"])
    return {k: sorted(v)[len(v) // 2] for k, v in by.items()}


def _slug(args) -> str:
    """"default" on Fashion-MNIST (the rows the README has always shown), else the data and resolution."""
    if args.data == DATASET and not args.resolution:
        return "default"
    return f"{Path(args.data).name}-{args.resolution or 'default'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--which", default="floor,dcgan,gan,plain")
    ap.add_argument("--measure", type=Path, help="measure this finished run instead of training")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead of wall time (ganforge models)")
    ap.add_argument("--n", type=int, default=10000, help="samples per set (and test images)")
    ap.add_argument("--set", action="append", default=[], help="config overrides for the ganforge runs")
    ap.add_argument("--tag", default="")
    ap.add_argument("--tag-suffix", default="", help="appended to each model's default row name and picture "
                    "(e.g. @1thread), so a re-measurement under other conditions keeps the published rows")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--data", default=DATASET, help="a dataset name or a folder (default fashion-mnist)")
    ap.add_argument("--resolution", type=int, default=0, help="0 = the model's default")
    ap.add_argument("--extractor", default=None, help="feature extractor (default: the data's domain classifier)")
    args = ap.parse_args()
    fmnist = args.data == DATASET
    from ganforge.data.sources import DATASETS, RENDERED

    named = {*DATASETS, *RENDERED}
    if fmnist:
        reference = load_image_set(DATASET, n=args.n, split="test")
    else:  # no test split: the training images, as the runs read them
        reference = load_image_set(args.data, n=args.n, split="train", resolution=args.resolution or None)

    def metrics(fake, what):
        # a named dataset picks its domain classifier; a folder uses --extractor (or Inception)
        return measure(fake, reference, what, args.data if args.data in named else None, args.extractor)
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    todo = ["measure"] if args.measure else args.which.split(",")
    for which in todo:
        t0 = time.time()
        if which == "floor":
            tr = load_data(DATASET, 32, "train")
            idx = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))[: args.n]
            if not fmnist:
                raise SystemExit("--which floor needs a test split (fashion-mnist)")
            entry = {"what": "real train vs real test (the floor)", **measure(tr.batch(idx), reference, "train")}
        elif which == "class-floor":  # the domain classifier on real test images, per class: what samples face
            te = load_data(DATASET, 32, "test")
            _, logits = classify(te.batch(torch.arange(len(te))), DATASET)
            k = len(te.classes)
            confusion = torch.zeros(k, k, dtype=torch.long)
            confusion.index_put_((te.labels, logits.argmax(1)), torch.ones(len(te), dtype=torch.long), accumulate=True)
            per = (confusion.diagonal().double() / confusion.sum(1)).tolist()
            entry = {"what": "real test images (the classifier's own accuracy)", "nimg": len(te),
                     "fid": None, "class_accuracy": {
                         "mean": round(sum(per) / k, 4), "n_per_class": int(confusion.sum(1)[0]),
                         "classifier": DATASET, "per_class": {c: round(a, 4) for c, a in zip(te.classes, per)},
                         "confusion": confusion.tolist(), "classes": list(te.classes)}}
        elif which == "measure" or which in ganforge.list_models():
            if which == "measure":
                run, steps = args.measure, ganforge.load(args.measure).step
                model = ganforge.load(run).cfg.model
            else:
                run, steps = train_ganforge(which, args)
                model = which
            gen = ganforge.load(run)
            fake = gen.sample(args.n, seed=0)
            default_tag = (model if fmnist else f"{model}@{_slug(args)}") + args.tag_suffix
            tag = args.tag or default_tag
            picture = (f"{model}-fashion" if fmnist else f"{model}-{_slug(args)}") + "".join(
                c if c.isalnum() or c in "-_" else "-" for c in args.tag_suffix).rstrip("-")
            # the README shows the default runs' grids; a tagged run keeps its grid in its run directory
            grid, nrow = fake[:64], 8
            if gen.conditional:  # one row per class, as the training grids
                per_row = max(1, 64 // gen.num_classes) if gen.num_classes <= 16 else 8
                grid = gen.sample(per_row * min(gen.num_classes, 16), seed=1,
                                  labels=torch.arange(min(gen.num_classes, 16)).repeat_interleave(per_row))
                nrow = per_row
            save_grid(grid, IMAGES / f"{picture}.png" if tag == default_tag else run / "quality-grid.png", nrow=nrow)
            entry = {"what": f"ganforge {model} on {args.data}, {budget}" + (f" ({' '.join(args.set)})" if args.set
                                                                              else ""),
                     "steps": steps, "run": str(run), **run_facts(run), **metrics(fake, "samples")}
            judge = DOMAIN.get(args.extractor or "") or gen.cfg.data.name
            if gen.conditional and judge in DOMAIN.values():  # is each class drawn as that class?
                entry["class_accuracy"] = class_accuracy(gen, judge, n_per_class=1000)
            if tag == default_tag and (model == "dcgan" and fmnist or model == "progan"):
                # the README's films: a small copy (14 frames; half size for 32px grids)
                build_progress_gif(run / "samples", max_frames=14, out=IMAGES / f"{picture}-progress.gif",
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
                     "run": str(out), **metrics(fake, "plain samples")}
        else:
            raise SystemExit(f"unknown --which {which}")
        entry.update(seconds=round(time.time() - t0), torch=torch.__version__, date=time.strftime("%Y-%m-%d"),
                     threads=torch.get_num_threads())
        merge_result(RESULTS, which, entry)
        print(json.dumps({which: entry}), flush=True)


if __name__ == "__main__":
    main()
