"""torch.compile per model: ganforge's training step with `train.compile` = G, D or all against the same step eager,
and what compiling costs. The figures behind `train.compile=auto` (ganforge/train/compile.py, AUTO) and the
"torch.compile" section of docs/benchmarks.md.

Each (model, networks) pair runs in its own process with an empty inductor cache, so the compile time is the one a
user's first run pays (later runs on the same machine reuse the cache). In that process the step is built as the
loop builds it (`train.compile` set, penalties eager), the first steps compile every graph the step uses (for
stylegan2 a whole lazy-regularisation cycle), and then the compiled step and the same step run eagerly
(`torch.compiler.set_stance("force_eager")`: the very same modules and weights) alternate in blocks, so machine
noise hits both alike; the figure to read is the ratio. A growing model (progan, stylegan) is timed at its stable
stage at the final resolution, and its compile time is that stage's: each stage compiles anew (a run has
2 log2(R / 4) + 1 of them, 7 at 32px).

    python benchmarks/compile_speed.py [--models dcgan,gan,...] [--which G,D,all] [--device cuda] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"gan": 28, "dcgan": 32, "sagan": 32, "pix2pix": 32, "progan": 32, "stylegan": 32, "stylegan2": 32,
          "stylegan2@64": 64}


def one(model: str, resolution: int, which: str, blocks: int, steps: int, device: str = "cpu") -> dict:
    import torch

    from ganforge.bench.speed import ganforge_step_fn, own_batch, resolve

    batch = {"dcgan": 64, "gan": 64}.get(model, 0)  # as `ganforge bench`: 64 for these, else the model's own
    batch = batch or own_batch(model, resolve(model, resolution, 0, device), resolution)
    channels = 3 if resolution >= 64 else 1
    sets = [f"train.compile={which}"] + (["arch.num_classes=10"] if model == "sagan" else [])
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (batch,), generator=gen).to(device) if model == "sagan" else None
    step, setup = ganforge_step_fn(model, resolution, channels, batch, device, sets, labels=labels)
    real = (torch.rand(batch, channels, resolution, resolution, generator=gen) * 2 - 1).to(device)
    torch.set_flush_denormal(True)  # as ganforge's loop runs on a CPU
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cycle = 16 if model.startswith("stylegan2") else 2  # every phase at least once: every graph compiled
    with torch.compiler.set_stance("force_eager"):
        for _ in range(cycle):
            step(real)  # warm the eager caches (oneDNN primitives) first, so they are not counted as compile time
        sync()
        t = time.perf_counter()
        for _ in range(cycle):
            step(real)
        sync()
        eager_first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(cycle):
        step(real)
    sync()
    compile_s = time.perf_counter() - t - eager_first
    n = -(-steps // cycle) * cycle
    times = {"eager": [], "compiled": []}
    for _ in range(blocks):
        for name in ("eager", "compiled"):
            with torch.compiler.set_stance("force_eager" if name == "eager" else "default"):
                sync()
                t = time.perf_counter()
                for _ in range(n):
                    step(real)
                sync()
                times[name].append((time.perf_counter() - t) / n)
    med = {k: statistics.median(v) for k, v in times.items()}
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    return {"model": model, "resolution": resolution, "channels": channels, "batch": batch, "compile": which,
            "device": device.split(":")[0], "device_name": where,
            "compiled": list(setup.compiled), "eager_img_s": round(batch / med["eager"], 1),
            "compiled_img_s": round(batch / med["compiled"], 1), "ratio": round(med["eager"] / med["compiled"], 3),
            "compile_s": round(compile_s, 1), "threads": torch.get_num_threads(), "blocks": blocks, "steps": n,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--which", default="G,D,all")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", help="merge the rows into this file, keyed device/model/resolution/networks")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: model@resolution:which
    args = ap.parse_args()
    if args.one:
        from ganforge.registry import GanforgeError

        spec, which = args.one.rsplit(":", 1)
        model, res = spec.split("@")
        try:
            row = one(model, int(res), which, args.blocks, args.steps, args.device)
        except GanforgeError as e:  # a model that cannot be compiled that way: its clear error is the row
            row = {"model": model, "resolution": int(res), "compile": which, "device": args.device.split(":")[0],
                   "error": str(e).splitlines()[0]}
        print("ROW " + json.dumps(row), flush=True)
        return
    for name in args.models.split(","):
        model, res = (name.split("@")[0], int(name.split("@")[1])) if "@" in name else (name, MODELS[name])
        for which in args.which.split(","):
            with tempfile.TemporaryDirectory() as cache:  # a cold inductor cache: a first run's compile time
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                cmd = [sys.executable, __file__, "--one", f"{model}@{res}:{which}", "--blocks", str(args.blocks),
                       "--steps", str(args.steps), "--device", args.device]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            got = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
            if not got:
                raise SystemExit(f"{model}@{res}:{which} failed:\n{out.stderr[-3000:]}")
            row = json.loads(got[0])
            if "error" in row:
                print(f"{model:9s} {res}px compile={which:3s}: refused: {row['error']}", flush=True)
            else:
                print(f"{model:9s} {res}px compile={which:3s} batch {row['batch']}: eager {row['eager_img_s']:7.1f} "
                      f"img/s, compiled {row['compiled_img_s']:7.1f} img/s -> x{row['ratio']:.2f}; compiling took "
                      f"{row['compile_s']:.0f} s", flush=True)
            if args.json:  # row by row, so a run cut short by a timeout keeps what it measured
                from ganforge.bench.results import merge_result

                merge_result(Path(args.json), f"{row['device']}/{row['model']}/{row['resolution']}px/{row['compile']}",
                             row)


if __name__ == "__main__":
    main()
