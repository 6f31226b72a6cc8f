"""Exponential moving average of G's weights (Karras et al. 2018, "Progressive Growing of GANs", and every
StyleGAN since): samples from the average are smoother and better than from the last iterate."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class EMA:
    """G_ema <- lerp(G_ema, G, 1 - beta), with the half-life in images (so a schedule that changes the batch
    size keeps the same averaging horizon) and a ramp-up (StyleGAN2-ADA). Buffers are copied, not averaged
    (StyleGAN2-ADA does the same): a running w average, spectral norm's power-iteration vectors or batch-norm
    statistics belong to the current weights."""

    def __init__(self, G: nn.Module, G_ema: nn.Module, half_life_kimg: float, rampup: float):
        self.half_life = half_life_kimg * 1000
        self.rampup = rampup
        self.src = list(G.parameters())
        self.dst = list(G_ema.parameters())
        self.src_buf = list(G.buffers())
        self.dst_buf = list(G_ema.buffers())

    @torch.no_grad()
    def update(self, nimg: int, batch_size: int) -> None:
        """After a step that showed `batch_size` images, `nimg` in all."""
        half_life = self.half_life
        if self.rampup > 0:
            half_life = min(half_life, nimg * self.rampup)
        beta = 0.5 ** (batch_size / max(half_life, 1e-8))
        torch._foreach_lerp_(self.dst, self.src, 1.0 - beta)
        if self.dst_buf:
            torch._foreach_copy_(self.dst_buf, self.src_buf)


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in net.modules())


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, make_inputs: Callable[[int, torch.Generator], dict], device,
                          batches: int = 8, batch_size: int = 64, seed: int = 1234) -> None:
    """Give an averaged G the batch-norm statistics of its own weights.

    Averaged weights and the running statistics of the live G do not match; sampling G_ema in eval mode
    needs statistics measured on G_ema itself. `make_inputs(n, generator)` is the recipe's `inputs`, so every
    input G takes (labels, noise) is drawn as in training. A fixed seed keeps this deterministic and
    independent of the training RNG, so recalibrating never changes the course of a run.
    """
    from ..recipes import to_device

    bns = [m for m in G.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    gen = torch.Generator().manual_seed(seed)
    modes = {m: m.training for m in G.modules()}
    # Only the batch norms in training mode: nothing else may change (spectral norm's power iteration, in
    # SAGAN, would otherwise move its vectors at every recalibration, and samples would drift between calls).
    G.eval()
    for m in bns:
        m.train()
    for _ in range(batches):
        G(**to_device(make_inputs(batch_size, gen), device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    for m, mode in modes.items():
        m.training = mode
