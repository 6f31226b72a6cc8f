"""The adversarial recipe of GAN (2014) and DCGAN, optionally class-conditional, optionally with D's inputs
augmented (DiffAugment, Zhao et al. 2020; ADA's adaptive probability, Karras et al. 2020).

Pass structure, the cheapest that is still the standard algorithm:
- G runs once per step. Phase D scores the real batch and the detached fake batch; phase G scores the same fake
  batch with the just-updated D, back-propagating into G through the graph kept from the D phase.
  (Goodfellow et al.'s Algorithm 1 draws fresh noise for the G update, and Newmu's Theano DCGAN alternates D and
  G updates on fresh noise; reusing the D phase's batch, as PyTorch's DCGAN example and most ports do, saves one
  G forward per step.)
- In phase G, D's weights are frozen (requires_grad off): the backward pass then skips D's weight gradients,
  which nobody would use.
Real and fake go through D as two batches, not one concatenated batch, because batch norm in D would otherwise
mix their statistics and change the method.

Augmentation: every image D sees, real or fake, in both phases, goes through the same differentiable ops, so
D cannot memorise the training set and G still learns the un-augmented distribution (the ops leak nothing when
applied with p < ~0.8, ADA section 2.2). With `recipe.ada`, p starts at 0 and follows the overfitting
heuristic r_t = E[sign(D(real) - b)] toward `ada_target`, b the loss's decision boundary (0; LSGAN's 0.5); p is
recipe state, saved in every checkpoint. augment.DAugment holds it all, shared with the other recipes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..augment import AugmentConfig, DAugment, check_augment
from ..losses import DECISION_BOUNDARY, LOSSES
from . import logit_stats  # defined before the package imports its recipes


@dataclass
class UnconditionalConfig(AugmentConfig):
    """augment, augment_p, ada, ada_target, ada_kimg, ada_interval (augment.AugmentConfig)"""


class Unconditional:
    config_cls = UnconditionalConfig

    def __init__(self, G, D, cfg):
        """`cfg` is the run's RunConfig; D is None when the recipe only samples (ganforge.load)."""
        from . import Phase, Schedule

        self.G, self.D = G, D
        self.rc: UnconditionalConfig = cfg.recipe
        self.d_loss, self.g_loss = LOSSES[cfg.train.loss]
        self.boundary = DECISION_BOUNDARY.get(cfg.train.loss)
        self.phases = (Phase("D", trains="D"), Phase("G", trains="G", frozen=("D",)))
        self._schedule = Schedule(cfg.data.resolution, cfg.train.batch_size)
        self.num_classes = getattr(G, "num_classes", 0)
        device = next(D.parameters()).device if D is not None else torch.device("cpu")
        self.aug = DAugment(self.rc, device, self.boundary)

    # -- the contract
    @staticmethod
    def needs(cfg) -> set[str]:
        """Batch keys this recipe takes for a run of `cfg`: labels only for a class-conditional model (-1: the
        data's classes, which it must have; -2: the data's classes where it has them, so labels are not required)."""
        k = getattr(cfg.arch, "num_classes", 0)
        return {"image", "label"} if k > 0 or k == -1 else {"image"}

    @staticmethod
    def check(cfg) -> None:
        """recipe.* values, before anything is built: clear errors."""
        check_augment(cfg.recipe)

    def schedule(self, nimg: int):
        return self._schedule

    def inputs(self, n: int, generator: torch.Generator, batch: dict | None = None,
               labels: torch.Tensor | None = None, truncation: float | None = None) -> dict:
        """z [n, z_dim] (truncated when asked); labels c [n] for a conditional G (the batch's labels in
        training, so fakes follow the data's class balance; given ones; else uniform); per-pixel noise where
        G declares `noise_shapes()`. All drawn from `generator`, on the CPU."""
        from . import truncated_normal

        out = {"z": truncated_normal(n, self.G.z_dim, generator, truncation)}
        if self.num_classes:
            if labels is not None:
                c = torch.as_tensor(labels, dtype=torch.int64).flatten()
                c = c.expand(n) if c.numel() == 1 else c
            elif batch is not None and "label" in batch:
                c = batch["label"][:n]
            else:
                c = torch.randint(0, self.num_classes, (n,), generator=generator)
            out["c"] = c
        if hasattr(self.G, "noise_shapes"):
            out["noise"] = [torch.randn(n, *s, generator=generator) for s in self.G.noise_shapes()]
        return out

    def state_dict(self) -> dict:
        return self.aug.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.aug.load_state_dict(state)

    # -- one step
    def _D(self, x: torch.Tensor, c) -> torch.Tensor:
        x = self.aug(x)
        return (self.D(x, c) if self.num_classes else self.D(x)).float()

    def begin_step(self, batch: dict, inputs: dict, schedule=None) -> dict:
        return {"real": batch["image"], "c": batch.get("label"), "inputs": inputs}

    def losses(self, phase: str, ctx: dict) -> dict[str, torch.Tensor]:
        if phase == "D":
            ctx["fake"] = fake = self.G(**ctx["inputs"])  # [N, C, H, W], graph kept for phase G
            c_fake = ctx["inputs"].get("c")
            real_logits = self._D(ctx["real"], ctx["c"])
            fake_logits = self._D(fake.detach(), c_fake)
            stats = logit_stats(real_logits, fake_logits, self.boundary)
            stats.update(self.aug.observe(real_logits))
            ctx["stats"] = stats
            return {"loss/D": self.d_loss(real_logits, fake_logits)}
        if phase == "G":
            return {"loss/G": self.g_loss(self._D(ctx["fake"], ctx["inputs"].get("c")))}
        raise KeyError(phase)
