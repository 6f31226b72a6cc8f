"""Recipes: how a family trains. The loop (train/loop.py) knows phases, not GAN maths; everything a family
needs beyond "D step, G step" goes through the recipe (docs/design.md, "The five seams"):

- `config_cls`: the recipe's own config section (`recipe.*` keys), saved with the run;
- `check(cfg)`: clear errors for bad `recipe.*` values, called when a config is validated;
- `needs(G)`: the batch keys it takes ("image", "label", "source"); a data source that lacks one is an error
  at start, before any training;
- `inputs(n, generator, batch=None, ...)`: everything G takes, drawn from one torch.Generator, so a seed
  fixes every random input; training, progress grids, evaluation, `ganforge.load` and the CLI all call it;
- `schedule(nimg)`: resolution, batch size and fade-in alpha by images shown (the loop counts them);
- `phases` and `losses(phase, ctx)`: the losses of each phase, which the loop back-propagates and steps;
- `state_dict()` / `load_state_dict()`: what the recipe learns as it goes (ADA's p, a path-length mean...),
  saved in every checkpoint;
- optionally `opt_scale` {"G": c, "D": c}: Adam's lr times c and betas to the power c for that network (lazy
  regularisation, StyleGAN2 section 3.1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Phase:
    name: str                     # "D", "G", later "D_reg", "G_reg"
    trains: str                   # which network's optimiser steps
    frozen: tuple[str, ...] = ()  # networks whose weights need no gradient in this phase (saves backward work)
    every: int = 1                # lazy regularisation: run only every N steps
    precision: str | None = None  # "fp32" to run this phase without autocast (R1, path length); None = the run's


@dataclass(frozen=True)
class Schedule:
    """What the loop trains at, by images shown."""
    resolution: int
    batch_size: int
    alpha: float = 1.0            # fade-in of a newly grown resolution (Progressive GAN); 1 = fully in
    lr: float | None = None       # learning rate of G and D at this point (None: train.lr_g, train.lr_d)
    extra: dict = field(default_factory=dict)


def lazy_phases(phase_cls, d_every: int = 1) -> tuple:
    """A GAN's phases with D's penalty lazy (StyleGAN2, section 3.1): D, then "D_reg" every `d_every` steps
    where d_every > 1 (fp32), then G (D frozen). At 1, the plain D and G phases: the penalty is part of D's
    loss. A recipe with a G penalty appends its own "G_reg"."""
    phases = [phase_cls("D", trains="D")]
    if d_every > 1:
        phases.append(phase_cls("D_reg", trains="D", every=d_every, precision="fp32"))
    return (*phases, phase_cls("G", trains="G", frozen=("D",)))


def lazy_opt_scale(d_every: int = 1, g_every: int = 1) -> dict:
    """Adam for lazy regularisation (StyleGAN2, section 3.1): a network regularised every N steps takes
    lr * c and betas ** c, c = N / (N + 1), so its lazy steps add up to what N + 1 plain ones would do."""
    return {"D": d_every / (d_every + 1) if d_every > 1 else 1.0,
            "G": g_every / (g_every + 1) if g_every > 1 else 1.0}


def check_every(rc, *keys: str) -> None:
    """recipe.<key> for each key: a lazy-regularisation interval, an integer >= 1."""
    from ..registry import GanforgeError

    for k in keys:
        v = getattr(rc, k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GanforgeError(f"recipe.{k} must be an integer >= 1, got {v!r}")


def truncated_normal(n: int, dim: int, generator: torch.Generator, threshold: float | None = None) -> torch.Tensor:
    """z ~ N(0, I) [n, dim]; with `threshold` T, every coordinate with |z| > T is redrawn (BigGAN's truncation
    trick, Brock et al. 2019): less variety, more typical images."""
    z = torch.randn(n, dim, generator=generator)
    if threshold is None:
        return z
    for _ in range(1000):
        bad = z.abs() > threshold
        if not bad.any():
            break
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return z.clamp_(-threshold, threshold)


def logit_stats(real_logits: torch.Tensor, fake_logits: torch.Tensor, boundary: float | None) -> dict:
    """D's mean logits on real and fake, and (where the loss has a decision boundary) D's accuracy at telling
    them apart: what every recipe logs, and the health monitor's input. Detached, no host sync."""
    with torch.no_grad():
        stats = {"D/real": real_logits.mean(), "D/fake": fake_logits.mean()}
        if boundary is not None:
            stats["D/acc"] = ((real_logits > boundary).float().mean() + (fake_logits < boundary).float().mean()) / 2
    return stats


def capabilities(G: torch.nn.Module) -> dict:
    """What a built generator can do, read from the network itself (never from the family's name), so that
    sampling, the CLI and the web page light up for a family the moment it declares a capability."""
    return {"conditional": getattr(G, "num_classes", 0) > 0, "num_classes": getattr(G, "num_classes", 0),
            "has_mapping": bool(getattr(G, "has_mapping", False)), "translates": bool(getattr(G, "translates", False)),
            "noise": bool(G.noise_shapes()) if hasattr(G, "noise_shapes") else False}


def full_size(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """A growing G's output at an earlier stage, upscaled (nearest) to the run's resolution for grids,
    samples and evaluation (the official Progressive GAN code shows its stages the same way)."""
    r = images.shape[-1]
    if r >= resolution:
        return images
    return torch.nn.functional.interpolate(images, scale_factor=resolution // r, mode="nearest")


def chunks(inputs: dict, size: int):
    """Split G's inputs into dicts of at most `size` samples (tensors and lists of per-sample tensors)."""
    n = len(inputs["z"]) if "z" in inputs else len(next(v for v in inputs.values() if torch.is_tensor(v)))
    for start in range(0, n, size):
        part = {}
        for k, v in inputs.items():
            if torch.is_tensor(v) and v.ndim > 0:
                part[k] = v[start: start + size]
            elif isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]):
                part[k] = [t[start: start + size] for t in v]
            else:
                part[k] = v
        yield part


def to_device(inputs: dict, device) -> dict:
    out = {}
    for k, v in inputs.items():
        if torch.is_tensor(v):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]):
            out[k] = [t.to(device, non_blocking=True) for t in v]
        else:
            out[k] = v
    return out


from .unconditional import Unconditional, UnconditionalConfig  # noqa: E402,F401 (the public names)
from .progressive import Progressive, ProgressiveConfig  # noqa: E402,F401
from .style import StyleGAN2Recipe, StyleGANRecipe  # noqa: E402,F401
from .paired import Paired, PairedConfig  # noqa: E402,F401

RECIPES = {"unconditional": Unconditional, "progressive": Progressive, "stylegan": StyleGANRecipe,
           "stylegan2": StyleGAN2Recipe, "paired": Paired}
