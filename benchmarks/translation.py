"""pix2pix against an L1-only generator (the paper's ablation, table 1 and figure 4), on held-out pairs.

    python benchmarks/translation.py train --data edges2fashion --variant pix2pix --minutes 15
    python benchmarks/translation.py train --data edges2fashion --variant l1 --minutes 15
    python benchmarks/translation.py eval --data edges2fashion      # both runs -> docs/results/translation.json
    python benchmarks/translation.py drawn                          # hand-drawn outlines -> docs/images

Variants: `pix2pix` (cGAN + 100 L1, the defaults) and `l1` (`recipe.lambda_gan=0`: the same U-Net trained on
L1 alone; D is never run, so it sees more images in the same minutes). Both with ganforge's CPU preset and the
same seed. `eval` translates every held-out test pair (test-time dropout on, seed 0) and reports L1 to the
ground truth (mean absolute error, pixels in [0, 1]) and FID/KID of the outputs against the ground-truth images
with the targets' domain classifier; it also writes docs/images/pix2pix-<data>.png, rows of
input | L1 only | pix2pix | truth.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import merge_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "translation.json"
VARIANTS = {"pix2pix": [], "l1": ["--set", "recipe.lambda_gan=0"]}
RESOLUTION = {"edges2fashion": 32, "gray2emoji": 64}


def run_dir(data: str, variant: str) -> Path:
    return ROOT / "runs" / f"translation-{data}-{variant}"


def train(args) -> None:
    out = run_dir(args.data, args.variant)
    if out.exists():
        raise SystemExit(f"{out} exists; move it away to train again")
    cmd = [str(Path(sys.executable).parent / "ganforge"), "train", "pix2pix", "--data", args.data, "--resolution",
           str(RESOLUTION.get(args.data, 32)), "--minutes", str(args.minutes), "--out", str(out), "--quiet",
           "--sample-every", "500", *VARIANTS[args.variant]]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def evaluate(args) -> None:
    import ganforge
    from ganforge.metrics.translation import translation_metrics
    from ganforge.viz import save_grid

    shown = {}
    for variant in VARIANTS:
        run = run_dir(args.data, variant)
        gen = ganforge.load(run, device="cpu")
        t = time.time()
        res = translation_metrics(gen, split="test", n=args.n, seed=0, metrics=("fid", "kid"), outputs=True)
        images = res.pop("images")
        shown[variant] = images
        log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        last = [e for e in log if "nimg" in e][-1]
        cfg = gen.cfg
        entry = {"data": args.data, "variant": variant, "resolution": gen.resolution, "l1": res["l1"],
                 "fid": round(res["fid"], 3), "kid": res["kid"], "extractor": res["extractor"], "pairs": res["pairs"],
                 "lab_histogram_intersection": res.get("lab_histogram_intersection"),
                 "images_seen": last["nimg"], "steps": last["step"], "minutes": cfg.train.minutes,
                 "threads": args.threads, "batch": cfg.train.batch_size,
                 "network": f"ngf {cfg.arch.ngf}, ndf {cfg.arch.ndf}, norm {cfg.arch.norm}, "
                            f"patch {gen.net.resolution and cfg.arch.receptive_field or 'auto'}",
                 "eval_seconds": round(time.time() - t, 1), "date": time.strftime("%Y-%m-%d"),
                 "command": f"python benchmarks/translation.py train --data {args.data} --variant {variant} "
                            f"--minutes {cfg.train.minutes:g}; then eval"}
        merge_result(RESULTS, f"{args.data}/{variant}", entry)
        print(f"{args.data} {variant:8s} L1 {entry['l1']:.4f}  FID {entry['fid']:.3f}  KID {res['kid']['mean']:.4f}  "
              f"({entry['images_seen']} images, {res['pairs']['n']} test pairs, {entry['extractor']})"
              + (f"; Lab histogram intersection {res['lab_histogram_intersection']}"
                 if "lab_histogram_intersection" in res else ""))
    # the picture: input | L1 only | pix2pix | truth, for the first pairs of the test split
    k = args.picture_rows
    src = shown["pix2pix"]["sources"][:k]
    cols = [src, shown["l1"]["outputs"][:k], shown["pix2pix"]["outputs"][:k], shown["pix2pix"]["targets"][:k]]
    c = max(x.shape[1] for x in cols)
    grid = torch.stack([x.expand(-1, c, -1, -1) for x in cols], 1).flatten(0, 1)
    out = ROOT / "docs" / "images" / f"pix2pix-{args.data}.png"
    save_grid(grid, out, nrow=4 * args.picture_per_row)
    print(f"picture -> {out}")


# Outlines drawn with Pillow on a 32px canvas, 1px black lines on white as Canny draws them: (kind, polygon,
# the Fashion-MNIST classes that count as that kind, extra arcs). tests/test_pix2pix.py uses them too.
OUTLINES = [
    ("T-shirt", [(10, 4), (22, 4), (29, 10), (25, 14), (23, 12), (23, 28), (9, 28), (9, 12), (7, 14), (3, 10)],
     {"T-shirt/top", "Shirt", "Pullover", "Coat"}, []),
    ("pullover", [(10, 3), (22, 3), (28, 8), (30, 28), (25, 28), (23, 14), (23, 29), (9, 29), (9, 14), (7, 28), (2, 28),
                  (4, 8)], {"Pullover", "Coat", "Shirt", "T-shirt/top"}, []),
    ("trousers", [(10, 3), (22, 3), (24, 29), (18, 29), (16, 12), (14, 29), (8, 29)], {"Trouser"}, []),
    ("dress", [(12, 4), (20, 4), (21, 10), (26, 28), (6, 28), (11, 10)], {"Dress", "Coat", "T-shirt/top"}, []),
    ("bag", [(5, 11), (27, 11), (27, 28), (5, 28)], {"Bag"}, [(10, 4, 22, 18)]),
    ("sneaker", [(2, 17), (10, 14), (16, 17), (29, 20), (30, 25), (2, 25)], {"Sneaker", "Sandal", "Ankle boot"}, []),
]


def draw_outlines() -> tuple[torch.Tensor, torch.Tensor]:
    """The OUTLINES as edge maps [K, 1, 32, 32] in [-1, 1], and their filled masks (bool [K, 32, 32])."""
    import numpy as np
    from PIL import Image, ImageDraw

    xs, masks = [], []
    for _, poly, _, arcs in OUTLINES:
        img, mask = Image.new("L", (32, 32), 255), Image.new("L", (32, 32), 0)
        draw = ImageDraw.Draw(img)
        draw.polygon(poly, outline=0)
        for box in arcs:  # a bag's handle
            draw.arc(box, 180, 360, fill=0)
        ImageDraw.Draw(mask).polygon(poly, fill=1)
        xs.append(torch.from_numpy(np.array(img)).float()[None] / 127.5 - 1)
        masks.append(torch.from_numpy(np.array(mask)).bool())
    return torch.stack(xs), torch.stack(masks)


def read_outputs(gen, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The outlines, their translations by `gen`, and the class the Fashion-MNIST classifier reads in each."""
    from ganforge.data.sources import DATASETS
    from ganforge.metrics.domain import classify

    x, _ = draw_outlines()
    y = gen.translate(x, seed=seed)
    _, logits = classify(y, "fashion-mnist")
    return x, y, [DATASETS["fashion-mnist"].classes[i] for i in logits.argmax(1).tolist()]


def drawn(args) -> None:
    """Hand-drawn outlines -> the edges2fashion model: docs/images/pix2pix-drawn.png, and what each became."""
    import ganforge
    from ganforge.viz import save_grid

    gen = ganforge.load(run_dir("edges2fashion", "pix2pix"), device="cpu")
    x, y, seen = read_outputs(gen)
    for (kind, _, ok, _), got in zip(OUTLINES, seen):
        print(f"drawn {kind:9s} -> the classifier reads {got}{'' if got in ok else '  (not its kind)'}")
    out = ROOT / "docs" / "images" / "pix2pix-drawn.png"
    pairs = torch.stack([x, y], 1).flatten(0, 1)
    save_grid(torch.nn.functional.interpolate(pairs, scale_factor=3, mode="nearest"), out, nrow=2 * len(OUTLINES))
    print(f"drawn outlines and their translations -> {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default="edges2fashion")
    t.add_argument("--variant", choices=list(VARIANTS), required=True)
    t.add_argument("--minutes", type=float, default=15)
    e = sub.add_parser("eval")
    e.add_argument("--data", default="edges2fashion")
    e.add_argument("--n", type=int, default=None, help="test pairs (default: all)")
    e.add_argument("--threads", type=int, default=1, help="what the runs trained on, for the record")
    e.add_argument("--picture-rows", type=int, default=16)
    e.add_argument("--picture-per-row", type=int, default=4)
    sub.add_parser("drawn")
    args = ap.parse_args()
    {"train": train, "eval": evaluate, "drawn": drawn}[args.what](args)


if __name__ == "__main__":
    main()
