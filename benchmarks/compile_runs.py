"""torch.compile in real runs: two finished runs of the same command, one with `train.compile` set and one with
`off`, compared by images shown and steady speed; the row goes into docs/results/compile.json beside
benchmarks/compile_speed.py's in-process figures (which leave out what a real run adds: the compile competing with
training for the cores, and the first steps' wait).

The runs (each `--minutes M` from a cold inductor cache), for instance, one thread each and side by side:

    for c in G off; do OMP_NUM_THREADS=1 TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) ganforge train stylegan2 --data emoji \\
      --resolution 64 --minutes 15 --out runs/compile-ab-$c --quiet --set train.compile=$c & done; wait

or alone, one after the other, with every core. Then:

    python benchmarks/compile_runs.py runs/compile-ab-G runs/compile-ab-off --how "1 thread each, side by side" \\
      --json docs/results/compile.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml


def summary(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"img_per_s"' in line]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    speeds = [r["img_per_s"] for r in rows]
    return {"run": run.name, "compile": cfg["train"]["compile"], "minutes": cfg["train"]["minutes"],
            "images": rows[-1]["nimg"], "steps": rows[-1]["step"], "median_img_s": round(statistics.median(speeds[2:]), 1),
            "first_interval_img_s": speeds[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("compiled", type=Path)
    ap.add_argument("eager", type=Path)
    ap.add_argument("--how", required=True, help="how the two ran (threads, side by side or alone)")
    ap.add_argument("--json")
    args = ap.parse_args()
    a, b = summary(args.compiled), summary(args.eager)
    cfg = yaml.safe_load((args.compiled / "config.yaml").read_text())
    row = {"kind": "run", "model": cfg["model"], "resolution": cfg["data"]["resolution"], "data": cfg["data"]["name"],
           "how": args.how, "compiled": a, "eager": b, "images_ratio": round(a["images"] / b["images"], 3),
           "steady_ratio": round(a["median_img_s"] / b["median_img_s"], 3), "date": time.strftime("%Y-%m-%d")}
    print(f"{row['model']} {row['resolution']}px, {a['minutes']:g} min, {args.how}: compile={a['compile']} showed "
          f"{a['images']} images against {b['images']} eager (x{row['images_ratio']}); steady speed "
          f"{a['median_img_s']} against {b['median_img_s']} img/s (x{row['steady_ratio']})")
    if args.json:
        from ganforge.bench.results import merge_result

        merge_result(Path(args.json), f"run/{row['model']}/{row['resolution']}px/{a['minutes']:g}min/{args.how}", row)


if __name__ == "__main__":
    main()
