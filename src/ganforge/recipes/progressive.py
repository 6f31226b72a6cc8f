"""Progressive GAN's recipe (Karras et al. 2017): WGAN-GP with the epsilon-drift term, on a growing schedule.

D's loss, as the official code's loss.py (D_wgangp_acgan) computes it, averaged over the batch:
    D(fake) - D(real) + gp_weight / gp_target^2 * (||grad_x D(x_mix)|| - gp_target)^2 + drift * D(real)^2
with x_mix = lerp(real, fake, u), u ~ U(0, 1) per sample (Gulrajani et al. 2017); G's loss is -D(fake).
The gradient penalty runs in fp32 whatever the run's precision: a gradient norm in bf16 is too coarse.
With recipe.gp_every = N > 1 it runs lazily, as StyleGAN2 runs R1 (section 3.1): its own phase every N D steps,
weighted N times, D's Adam at lr * c and betas ** c (c = N / (N + 1)); the CPU preset's choice (N = 4).

Pass structure as the unconditional recipe's: G runs once per step; phase D scores the real batch, the
detached fakes and their mixes; phase G scores the same fakes with the just-updated D (frozen). The official
code draws fresh latents for G's step; reusing the D phase's batch saves one G forward per step.
The schedule is the loop's growth machinery (recipes/growth.py).

Optional, not in the paper: D's inputs augmented (`recipe.augment`, DiffAugment's ops at probability
`augment_p`), every image D scores. The penalty's mixes are augmented too, and the penalty is D's own gradient
norm at the augmented mix: the critic that must be 1-Lipschitz is D on what it sees (a gradient taken through
the ops, as StyleGAN2-ADA takes R1's, would be shrunk by cutout's zeros and pulled to 1 by a steeper D). ADA's
adaptive p is refused with the WGAN loss: it reads sign(D(real)), and a critic's scores have no decision
boundary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..augment import AugmentConfig, DAugment, check_augment
from ..losses import DECISION_BOUNDARY, LOSSES
from ..registry import GanforgeError
from ..train.compile import eager
from . import check_every, lazy_opt_scale, lazy_phases
from .growth import Growth, GrowthConfig, check_growth
from .unconditional import Unconditional


@dataclass
class ProgressiveConfig(AugmentConfig, GrowthConfig):  # augment keys: off unless asked for
    gp_weight: float = 10.0       # WGAN-GP's lambda
    gp_target: float = 1.0        # the gradient norm the penalty pulls toward (the official code's wgan_target)
    drift: float = 0.001          # epsilon_drift: keeps D's output near zero
    gp_every: int = 1             # lazy gradient penalty: every N D steps, weighted N times, D's Adam rescaled
                                  # (StyleGAN2's lazy regularisation, section 3.1); 1 = every step, the paper


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, target: float = 1.0, augment=None) -> torch.Tensor:
    """mean over the batch of (||grad_x D(x)|| - target)^2 at x = lerp(real, fake, u), u ~ U(0, 1) per sample
    (`augment`d where given: D's gradient at the augmented mix); differentiable in D's weights (double backward).
    fp32."""
    u = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=torch.float32)
    # the forward and its input gradient, both fp32; eager: a compiled D has no double backward
    with torch.autocast(real.device.type, enabled=False), eager():
        mixed = torch.lerp(real.float(), fake.float(), u)
        if augment is not None:
            mixed = augment(mixed)
        mixed = mixed.detach().requires_grad_(True)
        scores = D(mixed).float()
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = grad.flatten(1).square().sum(1).sqrt()
        return (norms - target).square().mean()


class Progressive:
    config_cls = ProgressiveConfig
    inputs = Unconditional.inputs  # z ~ N(0, I): G's only input

    def __init__(self, G, D, cfg):
        from . import Phase

        self.G, self.D = G, D
        self.rc: ProgressiveConfig = cfg.recipe
        self.d_loss, self.g_loss = LOSSES[cfg.train.loss]
        self.gp_every = self.rc.gp_every if self.rc.gp_weight > 0 else 1
        self.phases = lazy_phases(Phase, d_every=self.gp_every)
        self.opt_scale = lazy_opt_scale(d_every=self.gp_every)
        self.num_classes = 0
        self.growth = Growth(self.rc, cfg.data.resolution, cfg.train.batch_size)
        self.reset_optimizer_on_growth = self.rc.reset_optimizer
        device = next(D.parameters()).device if D is not None else torch.device("cpu")
        self.aug = DAugment(self.rc, device, DECISION_BOUNDARY.get(cfg.train.loss))

    def _D(self, x: torch.Tensor) -> torch.Tensor:
        return self.D(self.aug(x))

    @staticmethod
    def needs(cfg) -> set[str]:
        return {"image"}

    @staticmethod
    def check(cfg) -> None:
        r = cfg.recipe
        check_growth(r, cfg.data.resolution)
        for k, v in {"recipe.gp_weight": r.gp_weight, "recipe.drift": r.drift}.items():
            if not (v >= 0 and math.isfinite(v)):
                raise GanforgeError(f"{k} must be a finite number >= 0, got {v}")
        if not (r.gp_target > 0 and math.isfinite(r.gp_target)):
            raise GanforgeError(f"recipe.gp_target must be a finite number > 0, got {r.gp_target}")
        check_every(r, "gp_every")
        check_augment(r, cfg.train.loss)

    def schedule(self, nimg: int):
        return self.growth(nimg)

    def state_dict(self) -> dict:
        return self.aug.state_dict()  # the stage is a function of images shown; the networks hold it too

    def load_state_dict(self, state: dict) -> None:
        self.aug.load_state_dict(state)

    def begin_step(self, batch: dict, inputs: dict, schedule=None) -> dict:
        return {"real": batch["image"], "inputs": inputs}

    def losses(self, phase: str, ctx: dict) -> dict[str, torch.Tensor]:
        rc = self.rc
        if phase == "D":
            ctx["fake"] = fake = self.G(**ctx["inputs"])
            real_scores = self._D(ctx["real"]).float()
            fake_scores = self._D(fake.detach()).float()
            out = {"loss/D": self.d_loss(real_scores, fake_scores)}
            if rc.gp_weight > 0 and self.gp_every == 1:  # not lazy: part of D's loss
                out["loss/D_gp"] = self._gp(ctx)
            if rc.drift > 0:
                out["loss/D_drift"] = real_scores.square().mean() * rc.drift
            ctx["stats"] = {"D/real": real_scores.detach().mean(), "D/fake": fake_scores.detach().mean(),
                            **self.aug.observe(real_scores)}
            return out
        if phase == "D_reg":  # lazy: every gp_every steps, gp_every times the weight
            return {"loss/D_gp": self._gp(ctx) * self.gp_every}
        if phase == "G":
            return {"loss/G": self.g_loss(self._D(ctx["fake"]).float())}
        raise KeyError(phase)

    def _gp(self, ctx: dict) -> torch.Tensor:
        rc = self.rc
        gp = gradient_penalty(self.D, ctx["real"], ctx["fake"].detach(), rc.gp_target, self.aug)
        return gp * (rc.gp_weight / rc.gp_target ** 2)
