"""The unconditional recipe (GAN 2014, DCGAN): a D phase then a G phase on the same fake batch.

Pass structure, the cheapest that is still the standard algorithm:
- G(z) runs once per step. Phase D scores the real batch and the detached fake batch; phase G scores the
  same fake batch with the just-updated D, back-propagating into G through the graph kept from the D phase.
  (Goodfellow et al.'s Algorithm 1 draws fresh noise for the G update; reusing the D phase's batch, as the
  DCGAN reference code and most implementations do, saves one G forward per step.)
- In phase G, D's weights are frozen (requires_grad off): the backward pass then skips D's weight gradients,
  which nobody would use.
Real and fake go through D as two batches, not one concatenated batch, because batch norm in D would
otherwise mix their statistics and change the method.
"""
from __future__ import annotations

import torch

from ..losses import DECISION_BOUNDARY, LOSSES


class Unconditional:
    def __init__(self, G, D, loss: str):
        from . import Phase

        self.G, self.D = G, D
        self.d_loss, self.g_loss = LOSSES[loss]
        self.boundary = DECISION_BOUNDARY.get(loss)
        self.phases = (Phase("D", trains="D"), Phase("G", trains="G", frozen=("D",)))

    def begin_step(self, real: torch.Tensor, z: torch.Tensor) -> dict:
        return {"real": real, "z": z}

    def losses(self, phase: str, ctx: dict) -> dict[str, torch.Tensor]:
        if phase == "D":
            ctx["fake"] = fake = self.G(ctx["z"])  # [N, C, H, W], graph kept for phase G
            real_logits = self.D(ctx["real"]).float()
            fake_logits = self.D(fake.detach()).float()
            ctx["stats"] = {"D/real": real_logits.detach().mean(), "D/fake": fake_logits.detach().mean()}
            if self.boundary is not None:  # D's accuracy at telling real from fake: the health monitor's input
                with torch.no_grad():
                    b = self.boundary
                    ctx["stats"]["D/acc"] = ((real_logits > b).float().mean() + (fake_logits < b).float().mean()) / 2
            return {"loss/D": self.d_loss(real_logits, fake_logits)}
        if phase == "G":
            return {"loss/G": self.g_loss(self.D(ctx["fake"]).float())}
        raise KeyError(phase)
