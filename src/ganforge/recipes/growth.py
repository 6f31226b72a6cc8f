"""Progressive growing as the loop's machinery (Karras et al. 2017, section 3; StyleGAN v1 grows the same way).

A growing run starts at `start_resolution` and doubles up to the run's resolution. Counted in images shown:
the first resolution trains for `stable_kimg`; then each new resolution fades in over `fade_kimg` (alpha 0 -> 1)
and stabilises for `stable_kimg`; the final resolution trains on for as long as the run lasts. This is the
official code's schedule (train.py, TrainingSchedule: lod_training_kimg, lod_transition_kimg); the paper uses
800k images for each.

What the loop does with a growing schedule (train/loop.py, `Setup.apply_schedule`):
- sets every growing network (`set_growth`) to the schedule's resolution and alpha, each step, and the
  learning rates to the schedule's (`lr_dict`) where it gives one;
- resets the optimisers' state (Adam's moments) when a resolution starts to fade in and when it stabilises,
  as the official code does (`reset_opt_for_new_lod`) where the growth config asks;
- fades the real images in with the same alpha (`fade_reals`), so D sees reals and fakes blended alike;
- serves the data at the schedule's resolution (resized from the source images with antialiasing and cached
  per resolution: no per-resolution copies of the dataset on disk), at the schedule's batch size.
A schedule is a pure function of images shown, so a resume mid-fade lands on the same resolution, alpha and
batch size; the networks' stage and the data position are in the checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..models.layers import downscale2d, upscale2d
from ..registry import GanforgeError
from . import Schedule


@dataclass
class GrowthConfig:
    start_resolution: int = 4     # the first stage (a power of two, at most the run's resolution)
    stable_kimg: float = 800.0    # thousands of images per stable stage (the paper: 800)
    fade_kimg: float = 800.0      # thousands of images per fade-in (the paper: 800)
    batch_sizes: str = "256:14,512:6,1024:3"  # per-resolution batch sizes "R:N,..."; train.batch_size elsewhere
                                  # (the paper: 16 up to 128x128, then 14, 6, 3 to fit GPU memory)
    lr_dict: str = ""             # per-resolution learning rates of G and D, "R:lr,..." (the official configs'
                                  # G_lrate_dict = D_lrate_dict, e.g. StyleGAN's "128:0.0015,256:0.002");
                                  # train.lr_g and train.lr_d elsewhere
    reset_optimizer: bool = True  # clear Adam's state when a resolution starts fading in and when it
                                  # stabilises (the official code's reset_opt_for_new_lod)


def _parse_per_resolution(text: str, key: str, kind, example: str) -> dict:
    out: dict = {}
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        try:
            r, v = item.split(":")
            r, v = int(r), kind(v)
        except ValueError:
            raise GanforgeError(f"recipe.{key} must look like \"{example}\" (resolution:value, comma-separated), "
                                f"got {text!r}") from None
        if r < 4 or r & (r - 1) or not (v > 0 and math.isfinite(v)):
            raise GanforgeError(f"recipe.{key}: {item!r} needs a power-of-two resolution >= 4 and a value > 0")
        out[r] = v
    return out


def parse_batch_sizes(text: str) -> dict[int, int]:
    """"256:14,512:6" -> {256: 14, 512: 6}; a clear error for anything else."""
    return _parse_per_resolution(text, "batch_sizes", int, "4:64,8:64,256:14")


def parse_lr_dict(text: str) -> dict[int, float]:
    """"128:0.0015,256:0.002" -> {128: 0.0015, 256: 0.002}."""
    return _parse_per_resolution(text, "lr_dict", float, "128:0.0015,256:0.002")


def check_growth(g: GrowthConfig, resolution: int) -> None:
    """The growth config against the run's resolution: clear errors before anything is built."""
    s = g.start_resolution
    if s < 4 or s & (s - 1):
        raise GanforgeError(f"recipe.start_resolution must be a power of two >= 4, got {s}")
    if s > resolution:
        raise GanforgeError(f"recipe.start_resolution ({s}) is above the run's resolution ({resolution})")
    for k, v in {"recipe.stable_kimg": g.stable_kimg, "recipe.fade_kimg": g.fade_kimg}.items():
        if not (v >= 0 and math.isfinite(v)):
            raise GanforgeError(f"{k} must be a finite number >= 0, got {v}")
    parse_batch_sizes(g.batch_sizes)
    parse_lr_dict(g.lr_dict)


class Growth:
    """The schedule arithmetic: resolution, batch size and alpha after `nimg` images shown."""

    def __init__(self, g: GrowthConfig, resolution: int, batch_size: int):
        self.start, self.final, self.batch_size = g.start_resolution, resolution, batch_size
        self.stable = int(round(g.stable_kimg * 1000))
        self.fade = int(round(g.fade_kimg * 1000))
        self.batch_sizes = parse_batch_sizes(g.batch_sizes)
        self.lrs = parse_lr_dict(g.lr_dict)
        self.doublings = int(math.log2(resolution // g.start_resolution))

    def batch_at(self, resolution: int) -> int:
        return self.batch_sizes.get(resolution, self.batch_size)

    def __call__(self, nimg: int) -> Schedule:
        period = self.stable + self.fade
        k = nimg // period if period > 0 else self.doublings
        if k >= self.doublings:
            res, alpha = self.final, 1.0
        else:
            into = nimg - k * period
            if into < self.stable:
                res, alpha = self.start * 2 ** k, 1.0
            else:
                res, alpha = self.start * 2 ** (k + 1), (into - self.stable) / self.fade
        return Schedule(res, self.batch_at(res), alpha, self.lrs.get(res))

    def stages(self) -> list[tuple[int, float, float]]:
        """(resolution, kimg where its fade-in starts, kimg where it is stable): the plan, for printing."""
        out, period = [], (self.stable + self.fade) / 1000
        for k in range(self.doublings + 1):
            r = self.start * 2 ** k
            start = 0.0 if k == 0 else (k - 1) * period + self.stable / 1000
            out.append((r, start, start + (self.fade / 1000 if k else 0.0)))
        return out

    def describe(self) -> str:
        parts = [f"{r}px from {a:g}k (stable from {b:g}k, batch {self.batch_at(r)})" for r, a, b in self.stages()]
        return "growing: " + "; ".join(parts)


def fade_reals(images: torch.Tensor, alpha: float) -> torch.Tensor:
    """While a resolution fades in, real images are blended the same way as G's output: lerp(the image
    2x2-pooled and upsampled back, the image, alpha) (official code: training_loop.py, process_reals)."""
    if alpha >= 1.0:
        return images
    return torch.lerp(upscale2d(downscale2d(images)), images, alpha)
