"""The recipe of paired image-to-image translation: pix2pix (Isola et al. 2017, section 3.1).

G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G):
- L_cGAN: D scores (input, target) pairs as real and (input, G(input)) pairs as fake, patch by patch (a
  PatchGAN's map of logits, averaged), under the run's `train.loss` (the paper: the logistic loss, with G
  maximising log D(x, G(x)), the non-saturating form);
- D's objective is divided by 2, slowing D relative to G (the paper, section 3.3);
- L_L1 = mean |y - G(x)|, weighted by lambda = 100 (`recipe.lambda_l1`).

The paper's ablations are settings: `recipe.lambda_gan=0` is "L1 alone" (D is then never run or trained),
`recipe.lambda_l1=0` is "cGAN alone", and `arch.d_conditional=false` is "L1 + GAN" (D sees the output alone).

Pass structure as the unconditional recipe: G runs once per step; phase D scores the detached output, phase G
scores the same output with the just-updated D (frozen) and adds the L1 term.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import DECISION_BOUNDARY, LOSSES
from ..registry import GanforgeError
from . import logit_stats  # defined before the package imports its recipes


@dataclass
class PairedConfig:
    lambda_l1: float = 100.0   # weight of the L1 term (the paper's lambda); 0 = cGAN alone
    lambda_gan: float = 1.0    # weight of the adversarial term; 0 = L1 alone (D is not trained)


class Paired:
    config_cls = PairedConfig

    def __init__(self, G, D, cfg):
        from . import Phase, Schedule

        self.G, self.D = G, D
        self.rc: PairedConfig = cfg.recipe
        self.d_loss, self.g_loss = LOSSES[cfg.train.loss]
        self.boundary = DECISION_BOUNDARY.get(cfg.train.loss)
        adversarial = self.rc.lambda_gan > 0
        self.phases = ((Phase("D", trains="D"),) if adversarial else ()) + (
            Phase("G", trains="G", frozen=("D",) if adversarial else ()),)
        self._schedule = Schedule(cfg.data.resolution, cfg.train.batch_size)

    @staticmethod
    def needs(cfg) -> set[str]:
        return {"image", "source"}

    @staticmethod
    def check(cfg) -> None:
        r = cfg.recipe
        if cfg.train.ema:
            raise GanforgeError(f"{cfg.model} keeps no moving average of G (the paper has none, and its batch norm "
                                f"and dropout act at test time); set train.ema=false")
        if not (r.lambda_l1 >= 0 and r.lambda_gan >= 0) or r.lambda_l1 + r.lambda_gan <= 0:
            raise GanforgeError(f"recipe.lambda_l1 and recipe.lambda_gan must be >= 0 and not both 0; got "
                                f"{r.lambda_l1}, {r.lambda_gan}")

    def schedule(self, nimg: int):
        return self._schedule

    def inputs(self, n: int, generator: torch.Generator, batch: dict | None = None, labels=None,
               truncation: float | None = None) -> dict:
        """G's input is the batch's source images (pix2pix has no z: its noise is dropout, drawn from the
        torch RNG as the network runs)."""
        if batch is None or "source" not in batch:
            raise GanforgeError("a translation model has no latent to sample: give it input images "
                                "(ganforge translate RUN --input PATH, or Generator.translate(images))")
        if labels is not None or truncation is not None:
            raise GanforgeError("a translation model takes no class and no truncation")
        return {"source": batch["source"][:n]}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def _D(self, image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.D(image, source).float()

    def begin_step(self, batch: dict, inputs: dict, schedule=None) -> dict:
        return {"real": batch["image"], "source": batch["source"], "inputs": inputs}

    def _fake(self, ctx: dict) -> torch.Tensor:
        if "fake" not in ctx:
            ctx["fake"] = self.G(**ctx["inputs"])  # graph kept for phase G
        return ctx["fake"]

    def losses(self, phase: str, ctx: dict) -> dict[str, torch.Tensor]:
        fake = self._fake(ctx)
        if phase == "D":
            real_logits = self._D(ctx["real"], ctx["source"])
            fake_logits = self._D(fake.detach(), ctx["source"])
            ctx["stats"] = logit_stats(real_logits, fake_logits, self.boundary)
            return {"loss/D": 0.5 * self.d_loss(real_logits, fake_logits)}
        if phase == "G":
            l1 = (fake.float() - ctx["real"].float()).abs().mean()
            ctx.setdefault("stats", {})["L1"] = l1.detach()  # unweighted: comparable across settings
            out = {"loss/L1": self.rc.lambda_l1 * l1}
            if self.rc.lambda_gan > 0:
                out["loss/G"] = self.rc.lambda_gan * self.g_loss(self._D(fake, ctx["source"]))
            return out
        raise KeyError(phase)
