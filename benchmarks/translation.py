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
                 "images_seen": last["nimg"], "steps": last["step"], "minutes": cfg.train.minutes,
                 "threads": args.threads, "batch": cfg.train.batch_size,
                 "network": f"ngf {cfg.arch.ngf}, ndf {cfg.arch.ndf}, norm {cfg.arch.norm}, "
                            f"patch {gen.net.resolution and cfg.arch.receptive_field or 'auto'}",
                 "eval_seconds": round(time.time() - t, 1), "date": time.strftime("%Y-%m-%d"),
                 "command": f"python benchmarks/translation.py train --data {args.data} --variant {variant} "
                            f"--minutes {cfg.train.minutes:g}; then eval"}
        merge_result(RESULTS, f"{args.data}/{variant}", entry)
        print(f"{args.data} {variant:8s} L1 {entry['l1']:.4f}  FID {entry['fid']:.3f}  KID {res['kid']['mean']:.4f}  "
              f"({entry['images_seen']} images, {res['pairs']['n']} test pairs, {entry['extractor']})")
    # the picture: input | L1 only | pix2pix | truth, for the first pairs of the test split
    k = args.picture_rows
    src = shown["pix2pix"]["sources"][:k]
    cols = [src, shown["l1"]["outputs"][:k], shown["pix2pix"]["outputs"][:k], shown["pix2pix"]["targets"][:k]]
    c = max(x.shape[1] for x in cols)
    grid = torch.stack([x.expand(-1, c, -1, -1) for x in cols], 1).flatten(0, 1)
    out = ROOT / "docs" / "images" / f"pix2pix-{args.data}.png"
    save_grid(grid, out, nrow=4 * args.picture_per_row)
    print(f"picture -> {out}")


def drawn(args) -> None:
    """Outlines drawn with Pillow (1px black lines on white, as Canny draws them) -> the edges2fashion model."""
    from PIL import Image, ImageDraw

    import ganforge
    from ganforge.viz import save_grid

    shapes = [
        [(10, 4), (22, 4), (29, 10), (25, 14), (23, 12), (23, 28), (9, 28), (9, 12), (7, 14), (3, 10)],  # T-shirt
        [(10, 3), (22, 3), (24, 29), (18, 29), (16, 12), (14, 29), (8, 29)],                             # trousers
        [(6, 6), (15, 6), (15, 16), (27, 20), (28, 26), (4, 26)],                                         # a boot
        [(8, 12), (24, 12), (26, 28), (6, 28)],                                                           # a bag
        [(12, 4), (20, 4), (21, 10), (26, 28), (6, 28), (11, 10)],                                        # a dress
    ]
    gen = ganforge.load(run_dir("edges2fashion", "pix2pix"), device="cpu")
    xs = []
    for poly in shapes:
        img = Image.new("L", (32, 32), 255)
        draw = ImageDraw.Draw(img)
        draw.polygon(poly, outline=0)
        if len(poly) == 4:  # the bag's handle
            draw.arc([11, 5, 21, 19], 180, 360, fill=0)
        xs.append(torch.from_numpy(__import__("numpy").array(img)).float()[None] / 127.5 - 1)
    x = torch.stack(xs)
    y = gen.translate(x, seed=0)
    out = ROOT / "docs" / "images" / "pix2pix-drawn.png"
    save_grid(torch.stack([x, y], 1).flatten(0, 1), out, nrow=2 * len(shapes))
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
