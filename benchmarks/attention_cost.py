"""Self-attention's cost on this CPU: the fused kernel against the explicit bmm + softmax form, and attention's
share of a whole sagan training step.

Part 1, one layer. ganforge's SelfAttention (ganforge.models.sagan: spectrally normalised 1x1 convolutions for
queries and keys of C/8 channels, values of C/8, the output back to C; x + gamma * out(...)), in training mode,
forward + backward (gradients for the input and every weight) on [B, C, S, S] maps, each of the S*S positions
attending to all S*S, three ways:
  fused NCHW: the module's own forward (F.scaled_dot_product_attention, scale 1: the model's default path) on
              contiguous NCHW maps;
  fused CL:   the same on channels_last maps with the module in channels_last, as ganforge's CPU step runs it;
  explicit:   benchmarks/plain_loop.py's bmm_attention_forward on the NCHW module (bmm, softmax over the
              [B, S*S, S*S] energy matrix, bmm: what the popular ports and the plain loop run).
Which kernel scaled_dot_product_attention picks is printed ("flash": the fused CPU kernel that never stores the
S*S x S*S matrix; "math": PyTorch's fallback, the same bmm + softmax + bmm, taken when the query/key/value
tensors do not have a unit stride in their last dimension). The three are timed interleaved (median of --reps),
fp32 by default (`--precision fp32,bf16` adds them under CPU bf16 autocast, as ganforge's step runs where the
CPU has native bf16). Each fused form is compared with the explicit one on the same input (fp32, eval mode so
spectral norm's power iteration stays put, gamma = 1 so the attention term counts, the first 4 of the batch): max
abs differences of the attention's output (before the last 1x1 conv, where the residual x does not round them
away), of the layer's output, of the gradient wrt the input and of the weights' gradients. "core GFLOP" is the
attention arithmetic alone (QK^T and AV, forward and backward: 3 x 2 B N^2 (d + dv)), without the convolutions.

Part 2, a whole step. ganforge's sagan training step (train_speed.py's ganforge_step_fn: its defaults on this
machine, the CPU preset arch.ch 32 and batch 64, class-conditional with 10 classes at 32px x1 and 9 at 64px x3)
with the model's attention (arch.attn_resolutions "auto" = R/2: 16x16 in G and D at 32px, 32x32 at 64px) against
the same config with arch.attn_resolutions="" (no attention layers at all); attention's share of the step is
1 - t(without) / t(with). `--loops ganforge,plain` also measures the plain loop's step (PlainSAGAN, explicit
attention, fp32) the same way.

    python benchmarks/attention_cost.py [--sizes 16,32,64] [--channels 64,128] [--json docs/results/attention.json]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from ganforge.models.sagan import SelfAttention, attention_resolutions
from ganforge.train.device import autocast, cpu_has_fast_bf16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain_loop import PlainSAGAN, bmm_attention_forward  # noqa: E402
from results_file import merge_result  # noqa: E402
from train_speed import ganforge_step_fn, resolve  # noqa: E402


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


# ------------------------------------------------------------------------------------------ part 1: one layer

def layer(channels: int, seed: int = 0) -> SelfAttention:
    torch.manual_seed(seed)
    m = SelfAttention(channels)  # the model's defaults: reduction 8, no pooling; spectrally normalised convs
    with torch.no_grad():
        m.gamma.fill_(1.0)  # the attention term in full (gamma starts at 0 in training; it grows)
    return m


CL = torch.channels_last
VARIANTS = ("fused_nchw", "fused_cl", "explicit")


def variants(m: SelfAttention) -> dict:
    """name -> (module, memory format, forward): the module's own forward on NCHW and on channels_last maps (a
    channels_last copy of the module, as ganforge's build makes it), and the ports' explicit form on NCHW."""
    m_cl = copy.deepcopy(m).to(memory_format=CL)
    return {"fused_nchw": (m, torch.contiguous_format, m),
            "fused_cl": (m_cl, CL, m_cl),
            "explicit": (m, torch.contiguous_format, lambda x: bmm_attention_forward(m, x))}


def sdpa_backend(module: SelfAttention, x: torch.Tensor) -> str:
    """The kernel scaled_dot_product_attention runs for this module and input: flash where it can, else math."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    module.eval()
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's why-not-flash warnings: the answer is the return value
            module(x[:1])
        return "flash"
    except RuntimeError:
        return "math"
    finally:
        module.train()


def run_grads(module, fmt, fn, x: torch.Tensor, g: torch.Tensor) -> dict:
    seen = {}

    def keep(mod, args):  # returns None: the conv's input is left as it is
        seen["o"] = args[0].detach().contiguous()

    hook = module.out.register_forward_pre_hook(keep)
    xi = x.detach().clone().contiguous(memory_format=fmt).requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out = fn(xi)
    out.backward(g.contiguous(memory_format=fmt))
    hook.remove()
    res = {"o": seen["o"], "out": out.detach().contiguous(), "dx": xi.grad.contiguous(),
           "dw": torch.cat([p.grad.flatten() for p in module.parameters()])}
    module.zero_grad(set_to_none=True)
    return res


def check(vs: dict, x: torch.Tensor) -> dict:
    """Max abs differences of each fused form from the explicit one (fp32, eval mode): the attention's output
    (the input of the last 1x1 conv, so the residual x does not round the difference away), the layer's output,
    the gradient wrt the input and the weights' gradients (which reach them through the attention only)."""
    g = torch.randn_like(x)
    for module, _, _ in vs.values():
        module.eval()
    res = {name: run_grads(*v, x, g) for name, v in vs.items()}
    for module, _, _ in vs.values():
        module.train()
    ref = res["explicit"]
    out = {"max_abs_o": ref["o"].abs().max().item(), "max_abs_dw": ref["dw"].abs().max().item()}
    for name in ("fused_nchw", "fused_cl"):
        for k in ("o", "out", "dx", "dw"):
            out[f"{name}_max_abs_diff_{k}"] = (res[name][k] - ref[k]).abs().max().item()
    return out


def time_layer(vs: dict, x: torch.Tensor, reps: int, dtype, which: list[str]) -> dict:
    g = torch.randn_like(x)
    inputs = {fmt: (x.contiguous(memory_format=fmt), g.contiguous(memory_format=fmt))
              for fmt in (torch.contiguous_format, CL)}

    def once(name):
        module, fmt, fn = vs[name]
        xf, gf = inputs[fmt]
        xi = xf.detach().requires_grad_(True)
        with autocast(torch.device("cpu"), dtype):
            out = fn(xi)
        out.backward(gf.to(out.dtype))
        module.zero_grad(set_to_none=True)

    for name in which:  # warm-up
        once(name)
    times = {k: [] for k in which}
    for _ in range(reps):
        for name in which:
            t = time.perf_counter()
            once(name)
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _cell(ms: dict, backend: dict, v: str, width: int) -> str:
    if ms[v] is None:
        return f"{'skipped':>{width}}"
    k = f" ({backend[v]})" if v in backend else ""
    return f"{f'{ms[v]:.1f}{k}':>{width}}"


def part1(sizes, channel_list, batch_arg, reps, precisions, max_gb, reduction=8) -> list[dict]:
    rows = []
    print("\nOne SelfAttention layer, forward + backward (train mode), median of", reps, "(ms); the kernel "
          "scaled_dot_product_attention picks in brackets; max abs differences fused (channels_last) - explicit")
    print(f"{'maps':>9} {'positions':>9} {'C':>4} {'B':>3} {'prec':>5} {'fused NCHW':>16} {'fused CL':>16} "
          f"{'explicit':>9} {'expl/CL':>7} {'core GFLOP':>10} {'max|d attn|':>11} {'max|d dW|':>9}")
    for s in sizes:
        n = s * s
        batch = batch_arg or (16 if n > 1024 else 64)
        for c in channel_list:
            d = max(1, c // reduction)
            m = layer(c)
            vs = variants(m)
            x = torch.randn(batch, c, s, s)
            core = 3 * 2 * batch * n * n * (d + d)
            # the explicit path (and the math fallback) hold about four [B, N, N] fp32 matrices at their peak
            gb = 4 * batch * n * n * 4 / 2 ** 30
            diff = check(vs, x[: min(batch, 4)])
            backend = {name: sdpa_backend(vs[name][0], x.contiguous(memory_format=vs[name][1]))
                       for name in ("fused_nchw", "fused_cl")}
            for prec in precisions:
                dtype = torch.bfloat16 if prec == "bf16" else None
                which = [v for v in VARIANTS if gb <= max_gb or (v != "explicit" and backend.get(v) == "flash")]
                t = time_layer(vs, x, reps, dtype, which)
                ms = {v: round(t[v] * 1e3, 2) if v in t else None for v in VARIANTS}
                row = {"size": s, "positions": n, "channels": c, "qk_channels": d, "batch": batch, "precision": prec,
                       **{f"{v}_ms": ms[v] for v in VARIANTS},
                       **{f"{v}_kernel": backend[v] for v in backend},
                       "explicit_over_fused_cl": round(t["explicit"] / t["fused_cl"], 2)
                       if "explicit" in t and "fused_cl" in t else None,
                       "explicit_over_fused_nchw": round(t["explicit"] / t["fused_nchw"], 2)
                       if "explicit" in t and "fused_nchw" in t else None,
                       "core_gflop": round(core / 1e9, 3), **diff, "reps": reps}
                for v in VARIANTS:
                    if v in t:
                        row[f"{v}_core_gflop_s"] = round(core / t[v] / 1e9, 1)
                    else:
                        row[f"{v}_skipped"] = f"needs ~{gb:.1f} GB > --max-gb {max_gb}"
                rows.append(row)

                ratio = row["explicit_over_fused_cl"]
                print(f"{s:>4}x{s:<4} {n:9d} {c:4d} {batch:3d} {prec:>5} {_cell(ms, backend, 'fused_nchw', 16)} "
                      f"{_cell(ms, backend, 'fused_cl', 16)} {_cell(ms, backend, 'explicit', 9)} {ratio if ratio is not None else '':>7} "
                      f"{row['core_gflop']:10.2f} {diff['fused_cl_max_abs_diff_o']:11.2e} "
                      f"{diff['fused_cl_max_abs_diff_dw']:9.2e}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ part 2: a whole step

def step_fn(loop: str, resolution: int, channels: int, classes: int, attn: bool, labels, real):
    sets = [f"arch.num_classes={classes}"] + ([] if attn else ["arch.attn_resolutions="])
    batch = real.shape[0]
    if loop == "ganforge":
        fn, _ = ganforge_step_fn("sagan", resolution, channels, batch, "cpu", sets, labels=labels)
        return fn
    cfg = resolve("sagan", resolution, batch, "cpu", sets)
    t = cfg.train
    plain = PlainSAGAN(cfg.arch, resolution, channels, batch, lr_g=t.lr_g, lr_d=t.lr_d, betas=t.betas)
    return lambda x: plain.step(x, labels)


def part2(resolutions, loops, blocks, steps) -> list[dict]:
    rows = []
    print(f"\nA whole sagan training step with attention (auto: R/2) and without (arch.attn_resolutions=\"\"), "
          f"median of {blocks} blocks of {steps} steps, interleaved")
    print(f"{'model':>12} {'loop':>9} {'attention at':>12} {'B':>3} {'with ms':>8} {'without ms':>10} "
          f"{'attention share':>15}")
    for r in resolutions:
        channels, classes = (1, 10) if r <= 32 else (3, 9)
        cfg = resolve("sagan", r, 0, "cpu", [f"arch.num_classes={classes}"])
        batch = cfg.train.batch_size
        at = ",".join(f"{a}x{a}" for a in sorted(attention_resolutions(cfg.arch, r)))
        real = torch.rand(batch, channels, r, r) * 2 - 1
        labels = torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(0))
        for loop in loops:
            fns = {a: step_fn(loop, r, channels, classes, a, labels, real) for a in (True, False)}
            torch.set_flush_denormal(loop == "ganforge")  # as ganforge's loop runs on CPU; plain keeps the default
            for fn in fns.values():  # warm-up: allocator, oneDNN primitive caches
                fn(real)
            times = {a: [] for a in fns}
            for _ in range(blocks):
                for a, fn in fns.items():
                    t = time.perf_counter()
                    for _ in range(steps):
                        fn(real)
                    times[a].append((time.perf_counter() - t) / steps)
            torch.set_flush_denormal(False)
            w, wo = statistics.median(times[True]), statistics.median(times[False])
            row = {"model": "sagan", "resolution": r, "channels": channels, "num_classes": classes, "batch": batch,
                   "loop": loop, "arch_ch": cfg.arch.ch, "attention_at": at,
                   "with_ms": round(w * 1e3, 1), "without_ms": round(wo * 1e3, 1),
                   "attention_share": round(1 - wo / w, 3), "blocks": blocks, "steps": steps}
            rows.append(row)
            print(f"{'sagan ' + str(r) + 'px':>12} {loop:>9} {at:>12} {batch:3d} {row['with_ms']:8.1f} "
                  f"{row['without_ms']:10.1f} {100 * row['attention_share']:14.1f}%", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,32,64", help="map sizes S of part 1 (S x S positions); '' skips it")
    ap.add_argument("--channels", default="64,128", help="channels C of part 1's layer (queries/keys C/8)")
    ap.add_argument("--batch", type=int, default=0, help="part 1's batch; default 64, 16 above 32x32 maps")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precision", default="fp32", help="part 1: fp32, bf16 (CPU autocast) or both: fp32,bf16")
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip the explicit path (and a math-fallback fused one) where it would need more")
    ap.add_argument("--step-resolutions", default="32,64", help="part 2's sagan resolutions; '' skips it")
    ap.add_argument("--loops", default="ganforge", help="part 2: ganforge, plain or ganforge,plain")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--json", help="also merge the results into this file")
    args = ap.parse_args()
    precisions = [p for p in args.precision.split(",") if p]
    if "bf16" in precisions and not cpu_has_fast_bf16():
        print("note: this CPU has no native bf16; bf16 rows run emulated")
    print(f"CPU: {torch.get_num_threads()} threads; torch {torch.__version__}")
    t0 = time.perf_counter()
    rows1 = part1(_ints(args.sizes), _ints(args.channels), args.batch, args.reps, precisions, args.max_gb)
    rows2 = part2(_ints(args.step_resolutions), [x for x in args.loops.split(",") if x], args.blocks, args.steps)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        common = {"threads": torch.get_num_threads(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                  "command": "python benchmarks/attention_cost.py " + " ".join(sys.argv[1:])}
        for r in rows1:
            key = f"layer/{r['size']}x{r['size']}/c{r['channels']}/b{r['batch']}/{r['precision']}"
            merge_result(Path(args.json), key, {**r, **common})
        for r in rows2:
            key = f"step/sagan/{r['resolution']}px/c{r['channels']}/b{r['batch']}/{r['loop']}"
            merge_result(Path(args.json), key, {**r, **common})


if __name__ == "__main__":
    main()
