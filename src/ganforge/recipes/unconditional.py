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
applied with p < ~0.8, ADA section 2.2). With `recipe.ada`, p starts at `augment_p` and follows the overfitting
heuristic r_t = E[sign(D(real))] toward `ada_target`; p is recipe state, saved in every checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..augment import AdaptiveP, augment, parse_policy
from ..losses import DECISION_BOUNDARY, LOSSES
from . import logit_stats  # defined before the package imports its recipes


@dataclass
class UnconditionalConfig:
    augment: str = ""          # D's differentiable augmentation: comma-separated ops of color, translation,
                               # cutout ("" = none, the papers' setting)
    augment_p: float = 1.0     # probability of each op per image: 1 = DiffAugment (ignored with ada)
    ada: bool = False          # adapt p to D's overfitting (ADA): starts at 0; r_t = E[sign(D(real))] held near
                               # ada_target
    ada_target: float = 0.6    # ADA's r_t target (the paper's 0.6)
    ada_kimg: float = 100.0    # thousands of images for p to move from 0 to 1 (paper: 500, for week-long runs)
    ada_interval: int = 4      # D steps between adjustments of p (paper: 4)


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
        self.ops = parse_policy(self.rc.augment)
        device = next(D.parameters()).device if D is not None else torch.device("cpu")
        self.ada = (AdaptiveP(self.rc.ada_target, self.rc.ada_interval, self.rc.ada_kimg, 0.0, device)
                    if self.ops and self.rc.ada else None)
        # Whether D's inputs are augmented at all. With ADA it switches on the first time p rises above 0 (read
        # on the host only when p was just adjusted, every ada_interval D steps, as the official code reads its
        # statistics) and stays on: while D does not overfit, the step costs nothing extra, and once it does,
        # no more host reads. It is recipe state, so a resumed run augments exactly when the original did.
        self._augmenting = bool(self.ops) and self.ada is None and self.rc.augment_p > 0

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
        from ..registry import GanforgeError

        r = cfg.recipe
        try:
            parse_policy(r.augment)
        except ValueError as e:
            raise GanforgeError(f"recipe.augment: {e}") from None
        if r.ada and not r.augment:
            raise GanforgeError("recipe.ada adapts the strength of recipe.augment's ops, and recipe.augment is empty; "
                                "set recipe.augment=color,translation,cutout")
        if not 0 <= r.augment_p <= 1:
            raise GanforgeError(f"recipe.augment_p must lie in [0, 1], got {r.augment_p}")
        if not 0 < r.ada_target < 1 or not r.ada_kimg > 0 or r.ada_interval < 1:
            raise GanforgeError(f"recipe.ada_target must lie in (0, 1), recipe.ada_kimg be > 0 and "
                                f"recipe.ada_interval >= 1; got {r.ada_target}, {r.ada_kimg}, {r.ada_interval}")

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
        if self.ada is None:
            return {}
        return {"ada": {k: v.tolist() for k, v in self.ada.state_dict().items()}, "augmenting": self._augmenting}

    def load_state_dict(self, state: dict) -> None:
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict({k: torch.tensor(v) for k, v in state["ada"].items()})
            self._augmenting = bool(state["augmenting"])

    # -- one step
    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        if not self._augmenting:
            return x
        return augment(x, self.ops, self.ada.p if self.ada is not None else self.rc.augment_p)

    def _D(self, x: torch.Tensor, c) -> torch.Tensor:
        x = self._aug(x)
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
            if self.ada is not None:
                self.ada.observe(real_logits.detach())
                if self.ada.step(real_logits.shape[0]) and not self._augmenting:  # p was just adjusted
                    self._augmenting = float(self.ada.p) > 0
                stats["aug/p"] = self.ada.p.detach().clone()
                stats["aug/rt"] = self.ada.rt().detach().clone()
            ctx["stats"] = stats
            return {"loss/D": self.d_loss(real_logits, fake_logits)}
        if phase == "G":
            return {"loss/G": self.g_loss(self._D(ctx["fake"], ctx["inputs"].get("c")))}
        raise KeyError(phase)
