"""A folder of class subfolders made from labelled data, for the class-conditional "your own folder" check:
Fashion-MNIST test images (never used for training elsewhere) of a few classes, one PNG each, in subfolders
named after the classes (names a domain classifier knows, so class accuracy can be measured).

    python benchmarks/class_folder.py OUT [--classes Trouser,Dress,Sneaker,Bag,Ankle-boot] [--per-class 1000]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from ganforge.data import load_data
from ganforge.data.sources import DATASETS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--classes", default="Trouser,Dress,Sneaker,Bag,Ankle boot")
    ap.add_argument("--per-class", type=int, default=1000)
    args = ap.parse_args()
    names = DATASETS["fashion-mnist"].classes
    wanted = [c.strip() for c in args.classes.split(",")]
    unknown = [c for c in wanted if c not in names or "/" in c]
    if unknown:
        raise SystemExit(f"unknown or unusable class names {unknown}; Fashion-MNIST's: {', '.join(names)}")
    data = load_data("fashion-mnist", 28, split="test")
    for c in wanted:
        folder = args.out / c
        folder.mkdir(parents=True, exist_ok=True)
        idx = (data.labels == names.index(c)).nonzero().flatten()[: args.per_class]
        for i in idx.tolist():
            Image.fromarray(data.images[i, 0].numpy(), mode="L").save(folder / f"{i:05d}.png")
        print(f"{folder}: {len(idx)} images")


if __name__ == "__main__":
    main()
