"""The style-based GANs' recipes: StyleGAN (Karras et al. 2019) and StyleGAN2 (Karras et al. 2020).

Both: the non-saturating logistic loss; R1 on the reals, gamma/2 E||grad_x D(x)||^2 (Mescheder et al. 2018);
style-mixing regularisation: for a fraction `mixing` (0.9) of training batches, a second latent takes over the
styles from a random layer k in [1, num_ws) on (drawn per batch, as NVlabs' code does). The mixing latent and
the crossover are G's inputs (`inputs`), drawn from the run's latent generator, so a resume replays them.

StyleGAN2 adds lazy regularisation (section 3.1): R1 every `r1_every` (16) D steps and the path-length penalty
every `pl_every` (4) G steps, each as its own optimiser step with its loss times the interval, and Adam's
learning rate and betas rescaled by c = N / (N + 1) (lr c, beta^c) so the lazy steps add up to the same
dynamics. Path-length regularisation (section 3.2): for images g(w) and y ~ N(0, I) / sqrt(H W),
||J_w^T y|| = ||grad_w (g(w) . y)|| (mean over the styles of the squared norm, square-rooted) is pulled toward
its running mean a (decay 0.01: `pl_mean`, recipe state in every checkpoint), weight 2, on half the batch.
Both penalties run in fp32 whatever the run's precision.

StyleGAN (v1) grows like Progressive GAN (recipes/growth.py) and applies R1 (gamma 10) at every D step by
default (`recipe.r1_every` makes it lazy, as StyleGAN2's).

Optional, in both (off by default, as in the papers): D's inputs augmented (`recipe.augment`: DiffAugment's ops,
at a fixed probability or ADA's adaptive one, augment.py) on every image D scores; R1 is then taken through the
ops, with respect to the un-augmented reals, as StyleGAN2-ADA does.

Pass structure as the other recipes: G runs once per step for the D and G phases (the fakes scored by D, then by
the just-updated D with D frozen); the regularisation phases run their own forwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..augment import AugmentConfig, DAugment, check_augment
from ..losses import DECISION_BOUNDARY, LOSSES
from ..registry import GanforgeError
from ..train.compile import eager
from .growth import Growth, GrowthConfig, check_growth
from . import check_every, lazy_opt_scale, lazy_phases, logit_stats  # defined before the package imports its recipes


@dataclass
class StyleGAN2Config(AugmentConfig):  # augment keys: off unless asked for
    r1_gamma: float = 10.0        # R1 weight gamma (config F at 1024: 10; NVlabs' small-data configs use less)
    r1_every: int = 16            # lazy R1: every N D steps (1 = every step, folded into D's loss)
    pl_weight: float = 2.0        # path-length penalty weight (0 = off)
    pl_every: int = 4             # lazy path length: every N G steps
    pl_decay: float = 0.01        # decay of the running mean of path lengths
    pl_batch_shrink: int = 2      # the penalty runs on batch / shrink samples
    mixing: float = 0.9           # probability of style mixing per training batch


@dataclass
class StyleGANConfig(AugmentConfig, GrowthConfig):  # augment keys: off unless asked for
    # NVlabs' FFHQ schedule (train.py, 8 GPUs): from 8x8, 600k-image phases, batch 256 at 8x8 halving to 32 at
    # 64x64 (train.batch_size above), learning rates rising above 128x128
    start_resolution: int = 8
    stable_kimg: float = 600.0
    fade_kimg: float = 600.0
    batch_sizes: str = "4:512,8:256,16:128,32:64"
    lr_dict: str = "128:0.0015,256:0.002,512:0.003,1024:0.003"
    r1_gamma: float = 10.0        # R1 weight gamma (the paper: 10), every D step
    r1_every: int = 1             # lazy R1 (StyleGAN2's section 3.1): every N D steps; 1 = every step, the paper
    mixing: float = 0.9           # probability of style mixing per training batch


def r1_penalty(D, real: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||grad_x D(x)||^2 at the real images; differentiable in D's weights. fp32."""
    x = real.detach().float().requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False), eager():  # eager: a compiled D has no double backward
        scores = D(x).float()
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def path_lengths(G, inputs: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """||J_w^T y|| per sample for n samples of `inputs` (y ~ N(0, I) / sqrt(H W)); returns (lengths [n], images).
    fp32."""
    dev = inputs["z"].device
    with torch.autocast(dev.type, enabled=False), eager():
        ws = G.ws(inputs["z"][:n], _part(inputs.get("z2"), n), inputs.get("mix_cutoff"))
        noise = inputs.get("noise")
        img = G.synthesis(ws, [t[:n] for t in noise] if noise is not None else None).float()
        y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    return grad.square().sum(2).mean(1).sqrt(), img


def _part(t, n):
    return t[:n] if t is not None else None


def _check_common(cfg) -> None:
    r = cfg.recipe
    check_augment(r, cfg.train.loss)
    if not (r.r1_gamma >= 0 and math.isfinite(r.r1_gamma)):
        raise GanforgeError(f"recipe.r1_gamma must be a finite number >= 0, got {r.r1_gamma}")
    if not 0 <= r.mixing <= 1:
        raise GanforgeError(f"recipe.mixing (the style-mixing probability) must lie in [0, 1], got {r.mixing}")


class _Style:
    """What both recipes share: inputs, the losses, R1 and the style-mixing draw."""

    def _init(self, G, D, cfg):
        from . import Phase

        self.G, self.D = G, D
        self.rc = cfg.recipe
        self.d_loss, self.g_loss = LOSSES[cfg.train.loss]
        self.boundary = DECISION_BOUNDARY.get(cfg.train.loss)
        self.num_classes = 0
        self.Phase = Phase
        self.r1_every = self.rc.r1_every if self.rc.r1_gamma > 0 else 1
        self.pl_weight = getattr(self.rc, "pl_weight", 0.0)
        device = next(D.parameters()).device if D is not None else torch.device("cpu")
        self.aug = DAugment(self.rc, device, self.boundary)

    def _D(self, x: torch.Tensor) -> torch.Tensor:
        return self.D(self.aug(x))

    def _r1(self, real: torch.Tensor) -> torch.Tensor:
        return r1_penalty(self._D, real)

    @staticmethod
    def needs(cfg) -> set[str]:
        return {"image"}

    def inputs(self, n: int, generator: torch.Generator, batch: dict | None = None, labels=None,
               truncation: float | None = None) -> dict:
        """z [n, z_dim] ~ N(0, I); per-pixel noise [n, 1, R, R] for every noise input; in training (a batch
        given), style mixing's second latent z2 and crossover layer (or none, with probability 1 - mixing);
        `truncation` is psi, toward the tracked average w (1: none, 0: the average image)."""
        G = self.G
        out = {"z": torch.randn(n, G.z_dim, generator=generator),
               "noise": [torch.randn(n, *s, generator=generator) for s in G.noise_shapes()]}
        if batch is not None and self.rc.mixing > 0:
            out["z2"] = torch.randn(n, G.z_dim, generator=generator)
            mix = torch.rand((), generator=generator).item() < self.rc.mixing
            active = self._active_ws()  # the styles the current stage uses (NVlabs' cur_layers)
            cut = int(torch.randint(1, active, (), generator=generator)) if active > 1 else G.num_ws
            out["mix_cutoff"] = cut if mix else G.num_ws
        if truncation is not None:
            out["psi"] = float(truncation)
        return out

    def _active_ws(self) -> int:
        return self.G.num_ws

    def begin_step(self, batch: dict, inputs: dict, schedule=None) -> dict:
        return {"real": batch["image"], "inputs": inputs}

    def _d_main(self, ctx: dict) -> dict:
        inputs = ctx["inputs"]
        if "mix_cutoff" in inputs:
            k = inputs["mix_cutoff"]
            inputs = {key: v for key, v in inputs.items() if key not in ("z2", "mix_cutoff")}
            if k < self.G.num_ws:  # mixing: k as a tensor, one compiled graph for every layer (StyleGenerator.ws)
                inputs.update(z2=ctx["inputs"]["z2"], mix_cutoff=torch.tensor(k))
        ctx["fake"] = fake = self.G(**inputs)
        real_logits = self._D(ctx["real"]).float()
        fake_logits = self._D(fake.detach()).float()
        out = {"loss/D": self.d_loss(real_logits, fake_logits)}
        if self.rc.r1_gamma > 0 and self.r1_every == 1:  # not lazy: part of D's loss
            out["loss/D_r1"] = self._r1(ctx["real"]) * (self.rc.r1_gamma / 2)
        # ADA's bookkeeping last, as the other recipes: p moves after every D input of the step is augmented
        ctx["stats"] = {**logit_stats(real_logits, fake_logits, self.boundary), **self.aug.observe(real_logits)}
        return out

    def losses(self, phase: str, ctx: dict) -> dict[str, torch.Tensor]:
        if phase == "D":
            return self._d_main(ctx)
        if phase == "D_reg":
            return {"loss/D_r1": self._r1(ctx["real"]) * (self.rc.r1_gamma / 2 * self.r1_every)}
        if phase == "G":
            return {"loss/G": self.g_loss(self._D(ctx["fake"]).float())}
        if phase == "G_reg":
            return self._path_length(ctx)
        raise KeyError(phase)


class StyleGAN2Recipe(_Style):
    config_cls = StyleGAN2Config

    def __init__(self, G, D, cfg):
        self._init(G, D, cfg)
        rc, Phase = self.rc, self.Phase
        from . import Schedule

        phases = list(lazy_phases(Phase, d_every=self.r1_every))
        if rc.pl_weight > 0:  # path length is only ever lazy here: G_reg even at pl_every = 1
            phases.append(Phase("G_reg", trains="G", every=rc.pl_every, precision="fp32"))
        self.phases = tuple(phases)
        # Adam for lazy regularisation (section 3.1): lr * c, betas ** c with c = every / (every + 1)
        self.opt_scale = lazy_opt_scale(d_every=self.r1_every, g_every=rc.pl_every if rc.pl_weight > 0 else 1)
        self._schedule = Schedule(cfg.data.resolution, cfg.train.batch_size)
        device = next(D.parameters()).device if D is not None else torch.device("cpu")
        self.pl_mean = torch.zeros((), device=device)

    @staticmethod
    def check(cfg) -> None:
        r = cfg.recipe
        _check_common(cfg)
        check_every(r, "r1_every", "pl_every", "pl_batch_shrink")
        if not (r.pl_weight >= 0 and math.isfinite(r.pl_weight)):
            raise GanforgeError(f"recipe.pl_weight must be a finite number >= 0, got {r.pl_weight}")
        if not 0 < r.pl_decay <= 1:
            raise GanforgeError(f"recipe.pl_decay must lie in (0, 1], got {r.pl_decay}")

    def schedule(self, nimg: int):
        return self._schedule

    def state_dict(self) -> dict:
        return {"pl_mean": float(self.pl_mean), **self.aug.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.aug.load_state_dict(state)
        if "pl_mean" in state:
            self.pl_mean.fill_(float(state["pl_mean"]))

    def _path_length(self, ctx: dict) -> dict:
        rc = self.rc
        n = max(1, ctx["real"].shape[0] // rc.pl_batch_shrink)
        lengths, img = path_lengths(self.G, ctx["inputs"], n)
        with torch.no_grad():
            from ..train.dist import all_sum_, world

            batch_mean = all_sum_(lengths.detach().mean()) / world().size  # under torchrun: over every rank
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, rc.pl_decay))
        penalty = (lengths - self.pl_mean).square().mean()
        ctx.setdefault("stats", {})["G/pl_mean"] = self.pl_mean.detach().clone()
        # img[:, 0, 0, 0] * 0: every synthesis weight in the graph, as NVlabs' code keeps it
        return {"loss/G_pl": penalty * (rc.pl_weight * rc.pl_every) + img[:, 0, 0, 0].mean() * 0}


class StyleGANRecipe(_Style):
    config_cls = StyleGANConfig

    def __init__(self, G, D, cfg):
        self._init(G, D, cfg)
        self.phases = lazy_phases(self.Phase, d_every=self.r1_every)
        self.opt_scale = lazy_opt_scale(d_every=self.r1_every)
        self.growth = Growth(self.rc, cfg.data.resolution, cfg.train.batch_size)
        self.reset_optimizer_on_growth = self.rc.reset_optimizer

    @staticmethod
    def check(cfg) -> None:
        _check_common(cfg)
        check_every(cfg.recipe, "r1_every")
        check_growth(cfg.recipe, cfg.data.resolution)

    def schedule(self, nimg: int):
        sched = self.growth(nimg)
        self._stage_resolution = sched.resolution  # the loop asks right before it draws G's inputs
        return sched

    def _active_ws(self) -> int:
        """Styles in use at the stage (2 per resolution up to the one fading in): style mixing's crossover is
        drawn below it, as NVlabs' cur_layers, so mixing happens at the stage's rate, not only near the end."""
        r = getattr(self, "_stage_resolution", self.G.resolution)
        return min(self.G.num_ws, 2 * (int(math.log2(r)) - 1))

    def state_dict(self) -> dict:
        return self.aug.state_dict()  # the stage is a function of images shown; the networks hold it too

    def load_state_dict(self, state: dict) -> None:
        self.aug.load_state_dict(state)
