"""Training-step speed: ganforge's step against a plain PyTorch loop of the identical networks.

The plain loop is benchmarks/plain_loop.py (PyTorch-GAN style: fp32, default Adam, two D passes on fake,
G first). ganforge runs its real step
(`Setup.train_step`, the one the loop calls) plus its EMA update, with its defaults: bf16 autocast where the
CPU has native bf16, channels_last, fused Adam, D frozen during the G phase, no host syncs.

Both run side by side in one process, interleaved in blocks, so machine noise hits both alike; the figure to
read is the ratio. Also reported: the FLOPs of one step (forward + backward of every pass, from PyTorch's
FLOP counter) and the achieved GFLOP/s against an estimate of this CPU's peak.

    python benchmarks/train_speed.py [--models dcgan,gan] [--batch-size 64] [--blocks 5] [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import statistics
import time

import torch

from ganforge import config as C
from ganforge.train.ema import EMA
from ganforge.recipes import to_device
from ganforge.train.device import cpu_has_fast_bf16
from ganforge.train.loop import build

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain_loop import PlainLoop  # noqa: E402


def plain_step_fn(model: str, resolution: int, channels: int, batch: int, device="cpu"):
    loop = PlainLoop(model, resolution, channels, batch, device=device)
    return loop.step


def ganforge_step_fn(model: str, resolution: int, channels: int, batch: int, device="cpu", sets=()):
    """ganforge's step as its loop runs it: the recipe's inputs drawn on the CPU, the batch as a dict, every
    phase, then the EMA update."""
    cfg = C.resolve(model, [{"data": {"resolution": resolution}, "train": {"batch_size": batch, "device": device}},
                            C.parse_set(list(sets))])
    s = build(cfg, channels)
    ema = EMA(s.G, s.G_ema, cfg.train.ema_kimg, cfg.train.ema_rampup) if s.G_ema is not None else None
    gen = torch.Generator().manual_seed(1)
    state = {"step": 0}

    def step(real):
        b = {"image": real.contiguous(memory_format=s.memory_format)}
        inputs = to_device(s.recipe.inputs(batch, gen, b), s.device)
        out = s.train_step(b, inputs, state["step"])
        state["step"] += 1
        if ema is not None:
            ema.update(state["step"] * batch, batch)
        return out

    return step, s


def count_flops(step, real) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step(real)
    return fc.get_total_flops()


def peak_gflops() -> dict:
    """A rough peak for this CPU: cores x clock x FLOP/cycle (Zen 4: two 256-bit FMA pipes = 32 fp32
    FLOP/cycle/core; AVX512-BF16 dot products double that). An estimate, to read achieved figures against."""
    mhz = 0.0
    try:
        with open("/proc/cpuinfo") as f:
            mhz = max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        pass
    cores = torch.get_num_threads()
    fp32 = cores * mhz / 1000 * 32
    return {"cores": cores, "clock_ghz": round(mhz / 1000, 2), "fp32": round(fp32, 1),
            "bf16": round(fp32 * 2, 1) if cpu_has_fast_bf16() else None}


def bench(model: str, resolution: int, channels: int, batch: int, blocks: int, steps: int, device="cpu",
          sets=()) -> dict:
    real = torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
    plain = plain_step_fn(model, resolution, channels, batch, device)
    ours, setup = ganforge_step_fn(model, resolution, channels, batch, device, sets)
    flops = count_flops(plain_step_fn(model, resolution, channels, batch, device), real)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for fn in (plain, ours):  # warm-up: allocator, oneDNN primitive caches
        for _ in range(3):
            fn(real)
    times = {"plain": [], "ganforge": []}
    for _ in range(blocks):
        for name, fn in (("plain", plain), ("ganforge", ours)):
            torch.set_flush_denormal(name == "ganforge")  # as ganforge's loop runs on CPU; plain keeps the default
            sync()
            t = time.perf_counter()
            for _ in range(steps):
                fn(real)
            sync()
            times[name].append((time.perf_counter() - t) / steps)
    torch.set_flush_denormal(False)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": model, "resolution": resolution, "batch": batch,
        "plain_img_s": round(batch / med["plain"], 1), "ganforge_img_s": round(batch / med["ganforge"], 1),
        "ratio": round(med["plain"] / med["ganforge"], 2),
        "gflop_per_step_plain": round(flops / 1e9, 3),
        "plain_gflop_s": round(flops / med["plain"] / 1e9, 1),
        "ganforge_gflop_s_equiv": round(flops / med["ganforge"] / 1e9, 1),
        "ganforge_precision": str(setup.autocast_dtype or "fp32").replace("torch.", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="dcgan,gan")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--resolution", type=int, default=0, help="override the paper resolution (e.g. 64 for dcgan)")
    ap.add_argument("--set", action="append", default=[], help="config overrides for ganforge's step")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    res = {"dcgan": 32, "gan": 28}
    peak = peak_gflops()
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print(f"CPU: {torch.get_num_threads()} threads, ~{peak['clock_ghz']} GHz; estimated peak {peak['fp32']} GFLOP/s "
          f"fp32, {peak['bf16'] or 'n/a'} GFLOP/s bf16; torch {torch.__version__}")
    rows = []
    for model in args.models.split(","):
        r = bench(model, args.resolution or res[model], 1, args.batch_size, args.blocks, args.steps, args.device,
                  args.set)
        rows.append(r)
        print(f"{model:6s} {r['resolution']}px batch {r['batch']}: plain {r['plain_img_s']:7.1f} img/s, "
              f"ganforge {r['ganforge_img_s']:7.1f} img/s ({r['ganforge_precision']}) -> x{r['ratio']:.2f}; "
              f"{r['gflop_per_step_plain']} GFLOP/step: plain {r['plain_gflop_s']} GFLOP/s, ganforge "
              f"{r['ganforge_gflop_s_equiv']} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak": peak, "results": rows, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                       "command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])}, f, indent=1)


if __name__ == "__main__":
    main()
