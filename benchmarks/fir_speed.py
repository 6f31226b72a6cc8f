"""The stride-2 FIR downsampling on a CPU under bf16 autocast: PyTorch's bf16 strided depthwise convolution
against ganforge's `downsample2d` (which filters in fp32 there), and the whole StyleGAN2 step at 64px with
each of the two, interleaved in one process so machine noise hits both alike. Figures for docs/models/stylegan2.md.

    python benchmarks/fir_speed.py [--threads 1] [--blocks 4]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import ganforge.models.style as S
import ganforge.models.stylegan2 as M  # D's skip calls the name it imported
from ganforge.bench.speed import ganforge_step_fn


def bf16_downsample(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The filter as one depthwise conv in whatever dtype autocast picks (bf16): what ganforge did before."""
    c = x.shape[1]
    x = F.pad(x, [1, 1, 1, 1])
    return F.conv2d(x, f.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *f.shape), stride=2, groups=c)


def _ms(fn, x: torch.Tensor, n: int = 20) -> float:
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(3):
            fn(x).float().square().sum().backward()
        t = time.perf_counter()
        for _ in range(n):
            fn(x).float().square().sum().backward()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    f = S.fir_filter([1, 3, 3, 1])
    print(f"{args.threads} thread(s); forward + backward, ms per call")
    for shape in [(16, 128, 8, 8), (16, 64, 16, 16), (16, 32, 32, 32), (16, 16, 64, 64)]:
        x = torch.randn(shape)
        torch.testing.assert_close(S.downsample2d(x, f), bf16_downsample(x, f))
        print(f"  {str(list(shape)):18s} bf16 depthwise {_ms(lambda v: bf16_downsample(v, f), x):6.2f}   "
              f"ganforge (fp32 filter) {_ms(lambda v: S.downsample2d(v, f), x):6.2f}")
    step, _ = ganforge_step_fn("stylegan2", 64, 3, 16)
    real = torch.randn(16, 3, 64, 64)
    new, times = M.downsample2d, {"bf16": [], "ganforge": []}
    for _ in range(args.blocks):
        for name, fn in (("bf16", bf16_downsample), ("ganforge", new)):
            M.downsample2d = fn
            for _ in range(3):
                step(real)
            t = time.perf_counter()
            for _ in range(6):
                step(real)
            times[name].append((time.perf_counter() - t) / 6 * 1e3)
    M.downsample2d = new
    b, g = statistics.median(times["bf16"]), statistics.median(times["ganforge"])
    print(f"stylegan2 64px step (CPU preset, batch 16): bf16 downsampling {b:.0f} ms, ganforge's {g:.0f} ms: "
          f"x{b / g:.2f}")


if __name__ == "__main__":
    main()
