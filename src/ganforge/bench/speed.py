"""Training-step speed: ganforge's step against a plain PyTorch loop of the identical networks.

The plain loop is benchmarks/plain_loop.py (PyTorch-GAN style: fp32, default Adam, two D passes on fake,
G first; for progan a plain WGAN-GP step with drift, G run twice per step as the official code does).
ganforge runs its real step (`Setup.train_step`, the one the loop calls, given the growth schedule's stage
for progan) plus its EMA update, with its defaults: bf16 autocast where the CPU has native bf16,
channels_last where its build picks it, fused Adam, D frozen during the G phase, no host syncs.

Both run side by side in one process, interleaved in blocks, so machine noise hits both alike; the figure to
read is the ratio. Also reported: the FLOPs of one plain step (forward + backward of every pass, the gradient
penalty's double backward included, from PyTorch's FLOP counter: convolutions and matmuls) and the achieved
GFLOP/s against an estimate of this CPU's peak.

progan runs at one stage of its growth, the same on both sides: by default the stable stage (alpha = 1) at
the final resolution, the stage that dominates training time; `--alpha 0.5` measures the middle of that
resolution's fade-in instead. Its network widths and batch size are ganforge's preset for the device
(`config.resolve("progan", ...)`: on a CPU, widths 128 down to 16 and batch 16), on both sides.

sagan runs class-conditional, as on its data: 10 classes at 32px (1 channel, Fashion-MNIST-like), 9 at 64px (3
channels, emoji-like), `arch.num_classes` set on both sides (`--classes` to change it), the batch's labels for
real and fake alike, the same labels every step on both sides. Widths and batch are ganforge's CPU preset (arch.ch
32, batch 64) on both sides. The plain loop (`PlainSAGAN`) is the popular ports' step: fp32, NCHW, default Adam,
every self-attention layer as explicit bmm + softmax, a second G forward for G's step; ganforge's step runs its
fused scaled_dot_product_attention, the model's default.

    python benchmarks/train_speed.py [--models dcgan,gan] [--batch-size 64] [--blocks 5] [--steps 10]
    python benchmarks/train_speed.py --models progan --resolution 32 [--channels 1] [--alpha 1]
    python benchmarks/train_speed.py --models sagan --resolution 64 [--classes 9]
    python benchmarks/train_speed.py --models pix2pix [--resolution 64]

pix2pix: ganforge's CPU preset (ngf = ndf = 32, batch 32) on both sides; the plain step is junyanz's
Pix2PixModel (fp32, NCHW, default Adam, BCE against target tensors, D frozen in G's step as that code does).

With --json, each row is merged into the file under its key (model, resolution, channels, batch, stage), so
runs of different models or resolutions add up; benchmarks/report.py renders them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from ganforge import config as C
from ganforge.recipes import Schedule, to_device
from ganforge.recipes.growth import Growth
from ganforge.registry import get_model
from ganforge.train.device import cpu_has_fast_bf16
from ganforge.train.ema import EMA
from ganforge.train.loop import build

from .plain_loop import PlainLoop, PlainPix2Pix, PlainProGAN, PlainSAGAN, PlainStyleGAN2
from .results import speed_entries, speed_key, update_results


def growing(model: str) -> bool:
    return get_model(model).recipe == "progressive"


def resolve(model: str, resolution: int, batch: int, device="cpu", sets=()):
    """ganforge's config for the run (the device's preset included); batch 0: the model's own."""
    train = {"device": device, **({"batch_size": batch} if batch else {})}
    return C.resolve(model, [{"data": {"resolution": resolution}, "train": train}, C.parse_set(list(sets))])


def own_batch(model: str, cfg, resolution: int) -> int:
    """The model's own batch: a growing model's schedule at this resolution, else train.batch_size."""
    if growing(model):
        return Growth(cfg.recipe, resolution, cfg.train.batch_size).batch_at(resolution)
    return cfg.train.batch_size


def plain_step_fn(model: str, resolution: int, channels: int, batch: int, device="cpu", cfg=None,
                  alpha: float = 1.0, fused: str = "always", labels: torch.Tensor | None = None):
    if growing(model):  # the same networks as ganforge's (its arch config), at the same stage
        r = cfg.recipe
        return PlainProGAN(model, cfg.arch, resolution, channels, batch, resolution, alpha, device=device,
                           gp_weight=r.gp_weight, gp_target=r.gp_target, drift=r.drift).step
    if model == "stylegan2":  # the same networks, the popular ports' loop (benchmarks/plain_loop.py)
        r = cfg.recipe
        return PlainStyleGAN2(cfg.arch, resolution, channels, batch, lr=cfg.train.lr_d, r1_gamma=r.r1_gamma,
                              device=device, fused=fused, mixing=r.mixing, pl_weight=r.pl_weight).step
    if model == "sagan":  # the same networks (ganforge's arch config), the popular ports' loop, the same labels
        t = cfg.train
        loop = PlainSAGAN(cfg.arch, resolution, channels, batch, lr_g=t.lr_g, lr_d=t.lr_d, betas=t.betas,
                          device=device)
        return lambda real: loop.step(real, labels)
    if model == "pix2pix":  # the same U-Net and PatchGAN, junyanz's Pix2PixModel step; input = the target flipped
        return PlainPix2Pix(cfg.arch, resolution, channels, batch, lr=cfg.train.lr_g,
                            lambda_l1=cfg.recipe.lambda_l1, device=device).step
    loop = PlainLoop(model, resolution, channels, batch, device=device)
    return loop.step


def ganforge_step_fn(model: str, resolution: int, channels: int, batch: int, device="cpu", sets=(),
                     alpha: float = 1.0, labels: torch.Tensor | None = None):
    """ganforge's step as its loop runs it: the recipe's inputs drawn on the CPU, the batch as a dict (with
    `labels` as the batch's labels for a class-conditional model), every phase (given the schedule's stage where
    the model grows), then the EMA update."""
    cfg = resolve(model, resolution, batch, device, sets)
    s = build(cfg, channels)
    ema = EMA(s.G, s.G_ema, cfg.train.ema_kimg, cfg.train.ema_rampup) if s.G_ema is not None else None
    gen = torch.Generator().manual_seed(1)
    state = {"step": 0}
    schedule = Schedule(resolution, batch, alpha) if growing(model) else None

    def step(real):
        b = {"image": real.contiguous(memory_format=s.memory_format)}
        if labels is not None:
            b["label"] = labels
        if "source" in s.recipe.needs(cfg):  # a translator: the plain step's input, the target flipped
            b["source"] = real.flip(-1).contiguous(memory_format=s.memory_format)
        inputs = to_device(s.recipe.inputs(batch, gen, b), s.device)
        out = s.train_step(b, inputs, state["step"], schedule)
        state["step"] += 1
        if ema is not None:
            ema.update(state["step"] * batch, batch)
        return out

    return step, s


class _GlobalOnly:
    """FlopCounterMode's per-module attribution, switched off: its module tracker puts gradient hooks on
    module inputs, and those fail inside torch.autograd.grad on a leaf input ("A leaf node was passed to
    _will_engine_execute_node"), which is what a gradient penalty does. Only the global total is read here."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def count_flops(step, real, steps: int = 1) -> int:
    """FLOPs of one step as PyTorch's counter sees them (convolutions and matmuls, forward and every backward;
    the ops of a double backward, create_graph=True, are dispatched like any other and counted); averaged over
    `steps` steps where lazy regularisation makes steps differ."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _GlobalOnly()
    with fc:
        for _ in range(steps):
            step(real)
    return fc.get_total_flops() // steps


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
          sets=(), alpha: float = 1.0) -> dict:
    cfg = resolve(model, resolution, batch, device, sets)
    batch = batch or own_batch(model, cfg, resolution)
    if alpha < 1 and not growing(model):
        raise SystemExit(f"--alpha is for growing models; {model} does not grow")
    real = torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
    k = getattr(cfg.arch, "num_classes", 0)
    labels = torch.randint(0, k, (batch,), generator=torch.Generator().manual_seed(0)).to(device) if k > 0 else None
    plain = plain_step_fn(model, resolution, channels, batch, device, cfg, alpha, labels=labels)
    ours, setup = ganforge_step_fn(model, resolution, channels, batch, device, sets, alpha, labels=labels)
    # stylegan2: PyTorch's counter counts a grouped convolution as if every group saw every channel; the
    # plain step's work is counted with the other form of the modulated conv (the same arithmetic)
    flops = count_flops(plain_step_fn(model, resolution, channels, batch, device, cfg, alpha, fused="never",
                                      labels=labels), real, 16 if model == "stylegan2" else 1)
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
    row = {
        "model": model, "resolution": resolution, "channels": channels, "batch": batch,
        "plain_img_s": round(batch / med["plain"], 1), "ganforge_img_s": round(batch / med["ganforge"], 1),
        "ratio": round(med["plain"] / med["ganforge"], 2),
        "gflop_per_step_plain": round(flops / 1e9, 3),
        "plain_gflop_s": round(flops / med["plain"] / 1e9, 1),
        "ganforge_gflop_s_equiv": round(flops / med["ganforge"] / 1e9, 1),
        "ganforge_precision": str(setup.autocast_dtype or "fp32").replace("torch.", ""),
        "blocks": blocks, "steps": steps,
    }
    if growing(model):
        a = cfg.arch
        row.update({"alpha": alpha, "stage": "stable" if alpha >= 1 else f"fade-in, alpha {alpha:g}",
                    "arch": f"fmap_base {a.fmap_base}, fmap_max {a.fmap_max}"})
    if model == "sagan":
        from ganforge.models.sagan import attention_resolutions

        a = cfg.arch
        at = ",".join(str(r) for r in sorted(attention_resolutions(a, resolution))) or "none"
        row.update({"num_classes": k, "network": f"ch {a.ch}, attention at {at}px, {k} classes"})
    return row


RESOLUTION = {"dcgan": 32, "gan": 28, "progan": 32, "stylegan2": 32, "sagan": 32, "pix2pix": 32}


def parser(prog: str | None = None):
    """The benchmark's options (`ganforge bench --help`)."""
    from ..cli import _Parser  # the CLI's one-line errors

    ap = _Parser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="dcgan,gan")
    ap.add_argument("--batch-size", type=int, default=0,
                    help="default: 64 for dcgan and gan; the model's own (ganforge's config) for progan, "
                         "stylegan2 and sagan")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--resolution", type=int, default=0,
                    help="override the default resolution (dcgan 32, gan 28, progan, stylegan2 and sagan 32; "
                         "e.g. 64 for dcgan)")
    ap.add_argument("--channels", type=int, default=0,
                    help="image channels; default 1 (Fashion-MNIST-like), 3 for progan, stylegan2 and sagan at "
                         "64px (emoji-like)")
    ap.add_argument("--alpha", type=float, default=1.0,
                    help="progan: the stage's fade-in alpha at the final resolution (1 = the stable stage)")
    ap.add_argument("--classes", type=int, default=0,
                    help="sagan: its classes (arch.num_classes, both sides); default 10 at 1 channel, 9 at 3")
    ap.add_argument("--set", action="append", default=[], help="config overrides for ganforge's step")
    ap.add_argument("--json", help="also merge the results into this file")
    return ap


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """`ganforge bench ...` and `python benchmarks/train_speed.py ...` (argv: the arguments after the verb)."""
    args = parser(prog).parse_args(argv)
    res = RESOLUTION
    unknown = [m for m in args.models.split(",") if m not in res]
    if unknown:
        from ..registry import GanforgeError

        raise GanforgeError(f"no plain-loop baseline for {', '.join(unknown)}; benchmarked: {', '.join(res)}")
    peak = peak_gflops()
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print(f"CPU: {torch.get_num_threads()} threads, ~{peak['clock_ghz']} GHz; estimated peak {peak['fp32']} GFLOP/s "
          f"fp32, {peak['bf16'] or 'n/a'} GFLOP/s bf16; torch {torch.__version__}")
    rows = []
    for model in args.models.split(","):
        resolution = args.resolution or res[model]
        style, sagan, own = model == "stylegan2", model == "sagan", model in ("sagan", "stylegan2", "pix2pix")
        channels = args.channels or (3 if (growing(model) or own) and resolution >= 64 else 1)
        batch = args.batch_size or (0 if growing(model) or own else 64)
        # whole lazy-regularisation cycles per timed block (R1 every 16 steps, path length every 4)
        steps = -(-args.steps // 16) * 16 if style else args.steps
        # sagan: class-conditional as on its data (Fashion-MNIST's 10 classes, emoji's 9); a --set may override
        sets = ([f"arch.num_classes={args.classes or (10 if channels == 1 else 9)}"] if sagan else []) + args.set
        r = bench(model, resolution, channels, batch, args.blocks, steps, args.device, sets, args.alpha)
        rows.append(r)
        stage = f" ({r['stage']})" if "stage" in r else (f" ({r['num_classes']} classes)" if sagan else "")
        print(f"{model:6s} {r['resolution']}px x{channels}{stage} batch {r['batch']}: plain {r['plain_img_s']:7.1f} "
              f"img/s, ganforge {r['ganforge_img_s']:7.1f} img/s ({r['ganforge_precision']}) -> x{r['ratio']:.2f}; "
              f"{r['gflop_per_step_plain']} GFLOP/step: plain {r['plain_gflop_s']} GFLOP/s, ganforge "
              f"{r['ganforge_gflop_s_equiv']} GFLOP/s")
    if args.json:
        common = {"peak": peak, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                  "command": f"{prog or 'python benchmarks/train_speed.py'} " + " ".join(argv or sys.argv[1:])}
        new = {speed_key(r): {**r, **common} for r in rows}
        update_results(Path(args.json), lambda results: {**speed_entries(results), **new})


if __name__ == "__main__":
    main()
