"""Small data: does differentiable augmentation (DiffAugment; ADA's adaptive p) stop D memorising a small folder?

Trains the same model on a folder of images for the same wall time with each augmentation setting, then
measures FID/KID of 5,000 samples against held-out images of the same classes (the fashion-mnist-classifier's
features, offline). The defaults are chosen on one folder (`--tag tune`) and confirmed on another that was not
looked at while choosing (`--tag holdout`).

    python benchmarks/augment.py folders /tmp/ganforge-small [--per-class 200 --suffix=-1k]
    python benchmarks/augment.py run --data /tmp/ganforge-small/fm-a --reference /tmp/ganforge-small/fm-a-test \
        --minutes 5 --configs none,diffaugment,ada --tag tune

benchmarks/small_data.sh runs every row of docs/benchmarks.md's small-data table as it was run.
Results merge into docs/results/augment.json; benchmarks/report.py renders them into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import merge_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "augment.json"
IMAGES = ROOT / "docs" / "images"
OPS = "color,translation,cutout"
CONFIGS = {
    "none": {"recipe": {"augment": ""}},
    "diffaugment": {"recipe": {"augment": OPS, "augment_p": 1.0, "ada": False}},
    "ada": {"recipe": {"augment": OPS, "augment_p": 0.0, "ada": True}},
}
SUBSETS = {"fm-a": (0, 1, 2, 3, 4), "fm-b": (5, 6, 7, 8, 9)}  # T-shirt..Coat; Sandal..Ankle boot
PER_CLASS = 1000


def make_folders(out: Path, per_class: int = PER_CLASS, suffix: str = "") -> None:
    """Two Fashion-MNIST class subsets as folders of 32x32 PNGs (28x28 padded with background, as the named
    dataset is fed) in class subfolders: `per_class` training images per class (folders fm-a`suffix`,
    fm-b`suffix`), and the test split's images of the same classes as the reference (fm-a-test, fm-b-test)."""
    from PIL import Image

    from ganforge.data.sources import DATASETS, load_idx_dataset, locate

    classes = DATASETS["fashion-mnist"].classes
    for split in ("train", "test"):
        images, labels = load_idx_dataset(locate("fashion-mnist", split), split)
        images = torch.nn.functional.pad(images, (2, 2, 2, 2))
        for name, keep in SUBSETS.items():
            for c in keep:
                folder = out / (f"{name}{suffix}" if split == "train" else f"{name}-test") / classes[c].replace("/", "-")
                folder.mkdir(parents=True, exist_ok=True)
                idx = (labels == c).nonzero().flatten()[: per_class if split == "train" else None]
                for i in idx.tolist():
                    Image.fromarray(images[i, 0].numpy()).save(folder / f"{i:05d}.png")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} under {out}")


def run(args) -> None:
    from ganforge import config as C
    from ganforge import load
    from ganforge.metrics.evaluate import ImageSet, evaluate, load_image_set, to_uint8
    from ganforge.train.loop import train
    from ganforge.viz import save_grid

    reference = load_image_set(args.reference, n=args.n, seed=0)
    for name in args.configs.split(","):
        layers = [{"data": {"name": str(args.data)}, "train": {"minutes": args.minutes, "seed": args.seed}},
                  CONFIGS[name], C.parse_set(args.set)]
        cfg = C.resolve(args.model, layers)
        out = args.runs / f"augment-{args.tag}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        t0 = time.time()
        result = train(cfg, out, progress=False)
        gen = load(out, device="cpu")
        fake = gen.sample(args.n, seed=0)
        res = evaluate(ImageSet(to_uint8(fake, "samples"), "samples"), reference, ("fid", "kid"),
                       "fashion-mnist-classifier", kid_subset_size=min(1000, args.n // 2))
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        acc = [r["D/acc"] for r in rows if "D/acc" in r]
        p = [r["aug/p"] for r in rows if "aug/p" in r]
        save_grid(fake[:64], (IMAGES if args.grid_to_docs else out) / f"augment-{args.tag}-{name}.png", nrow=8)
        entry = {"tag": args.tag, "config": name, "model": args.model, "data": str(args.data),
                 "images": len(list(Path(args.data).rglob("*.png"))), "reference": str(args.reference),
                 "minutes": args.minutes, "steps": result["step"], "fid": round(res["fid"], 4),
                 "kid": round(res["kid"]["mean"], 5), "kid_std": round(res["kid"]["std"], 5),
                 "d_acc_last": round(float(np.mean(acc[-5:])), 3) if acc else None,
                 "p_last": round(p[-1], 3) if p else None, "extractor": res["extractor"], "n": args.n,
                 "set": args.set, "threads": torch.get_num_threads(), "seconds": round(time.time() - t0),
                 "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
        merge_result(RESULTS, f"{args.tag}/{name}", entry)
        print(json.dumps(entry), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    f = sub.add_parser("folders")
    f.add_argument("out", type=Path)
    f.add_argument("--per-class", type=int, default=PER_CLASS, help="training images per class")
    f.add_argument("--suffix", default="", help="added to the training folders' names (fm-a-1k: --suffix=-1k)")
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--reference", type=Path, required=True)
    r.add_argument("--model", default="dcgan")
    r.add_argument("--minutes", type=float, default=5.0)
    r.add_argument("--configs", default="none,diffaugment,ada")
    r.add_argument("--set", action="append", default=[])
    r.add_argument("--tag", required=True)
    r.add_argument("--n", type=int, default=5000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--runs", type=Path, default=ROOT / "runs")
    r.add_argument("--grid-to-docs", action="store_true", help="write the sample grid to docs/images (else the run)")
    args = ap.parse_args()
    if args.verb == "folders":
        make_folders(args.out, args.per_class, args.suffix)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
