"""Exponential moving average of G's weights (Karras et al. 2018, "Progressive Growing of GANs", and every
StyleGAN since): samples from the average are smoother and better than from the last iterate."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class EMA:
    """G_ema <- lerp(G_ema, G, 1 - beta), with the half-life in images and a ramp-up (StyleGAN2-ADA)."""

    def __init__(self, G: nn.Module, G_ema: nn.Module, half_life_kimg: float, rampup: float, batch_size: int):
        self.half_life = half_life_kimg * 1000
        self.rampup = rampup
        self.batch_size = batch_size
        self.src = [p for p in G.parameters()]
        self.dst = [p for p in G_ema.parameters()]

    @torch.no_grad()
    def update(self, nimg: int) -> None:
        half_life = self.half_life
        if self.rampup > 0:
            half_life = min(half_life, nimg * self.rampup)
        beta = 0.5 ** (self.batch_size / max(half_life, 1e-8))
        torch._foreach_lerp_(self.dst, self.src, 1.0 - beta)


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in net.modules())


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, z_dim: int, device, batches: int = 8, batch_size: int = 64,
                          seed: int = 1234) -> None:
    """Give an averaged G the batch-norm statistics of its own weights.

    Averaged weights and the running statistics of the live G do not match; sampling G_ema in eval mode
    needs statistics measured on G_ema itself. A fixed seed keeps this deterministic and independent of the
    training RNG, so recalibrating never changes the course of a run.
    """
    bns = [m for m in G.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    gen = torch.Generator(device=device).manual_seed(seed)
    was_training = G.training
    G.train()
    for _ in range(batches):
        G(torch.randn(batch_size, z_dim, generator=gen, device=device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    G.train(was_training)
