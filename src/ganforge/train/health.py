"""Training health: the failure modes the GAN literature names, caught while they happen.

- D wins completely: D tells real from fake almost perfectly for a long stretch; G then gets no useful
  gradient and the run stalls ("training that stalls").
- Losses stop moving: nothing is being learned any more.
- Mode collapse ("the same image only"): samples far less varied than the data, or a labelled dataset's
  classes barely covered (via the domain classifier, at evaluation time).
Each warning says what to try. A warning is raised once, and again only after it has cleared.
"""
from __future__ import annotations

import math
from collections import deque

import torch

D_WINS_ACCURACY = 0.99     # D's accuracy on real-vs-fake counted as "wins completely"
D_WINS_STEPS = 500         # ... for at least this many consecutive steps
FLAT_WINDOW = 10           # log intervals over which the losses must move at all
FLAT_TOLERANCE = 1e-4      # relative spread below which a loss counts as not moving
COLLAPSE_RATIO = 0.5       # sample diversity below this fraction of the data's = collapse


def diversity(images: torch.Tensor, size: int = 16) -> float:
    """Mean pairwise L2 distance between images, downsampled to `size` px (cheap, and blind to pixel noise)."""
    x = torch.nn.functional.adaptive_avg_pool2d(images.float(), size).flatten(1)
    d = torch.cdist(x, x)
    n = x.shape[0]
    return float(d.sum() / max(n * (n - 1), 1))


class HealthMonitor:
    def __init__(self, log_every: int, can_augment: bool = True):
        self.log_every = log_every
        self.can_augment = can_augment  # the run's recipe takes recipe.augment (pix2pix's does not)
        self.d_wins_since: int | None = None
        self.losses: dict[str, deque] = {}
        self.active: set[str] = set()

    def _raise(self, kind: str, condition: bool, message: str) -> list[str]:
        if condition and kind not in self.active:
            self.active.add(kind)
            return [message]
        if not condition:
            self.active.discard(kind)
        return []

    def observe_log(self, step: int, values: dict) -> list[str]:
        out: list[str] = []
        acc = values.get("D/acc")
        if acc is not None:
            if acc >= D_WINS_ACCURACY:
                self.d_wins_since = self.d_wins_since if self.d_wins_since is not None else step - self.log_every
            else:
                self.d_wins_since = None
            wins = self.d_wins_since is not None and step - self.d_wins_since >= D_WINS_STEPS
            cure = ("On a small data set D is memorising it: augment what D sees "
                    "(--set recipe.augment=color,translation,cutout --set recipe.ada=true, ADA's adaptive strength; "
                    "--set recipe.ada_target=0.4 augments harder). Else try" if self.can_augment else "Try")
            out += self._raise("d_wins", wins, (
                f"D wins completely (accuracy {acc:.3f} for {step - (self.d_wins_since or step)} steps): G gets no "
                f"useful gradient. {cure} a lower train.lr_d or train.loss=hinge"))
        for k, v in values.items():
            if k.startswith("loss/"):
                self.losses.setdefault(k, deque(maxlen=FLAT_WINDOW)).append(v)
        flat = [k for k, q in self.losses.items()
                if len(q) == FLAT_WINDOW and (max(q) - min(q)) <= FLAT_TOLERANCE * max(1.0, abs(sum(q) / len(q)))]
        out += self._raise("flat", bool(flat), (
            f"{', '.join(flat)} stopped moving over the last {FLAT_WINDOW * self.log_every} steps: nothing is being "
            f"learned. Check the learning rates (train.lr_g, train.lr_d) and the data"))
        return out

    def observe_samples(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[dict, list[str]]:
        """Sample diversity against the data's (both [N, C, H, W] in [-1, 1])."""
        d_fake, d_real = diversity(fake), diversity(real)
        if not d_real > 0:  # constant data: no yardstick
            return {}, []
        ratio = d_fake / d_real
        msg = (f"mode collapse: samples are far less varied than the data (diversity {ratio:.2f} of the data's). "
               f"Try train.loss=hinge, a lower train.lr_g, or resume from an earlier checkpoint")
        return {"health/diversity_ratio": round(ratio, 4)}, self._raise("collapse", ratio < COLLAPSE_RATIO, msg)

    def observe_classes(self, hist: dict) -> list[str]:
        n = round(math.exp(hist["max_entropy"]))
        few = hist["classes_covered"] < max(2, n // 2) or hist["largest_class_share"] > 0.5
        return self._raise("classes", few, (
            f"mode collapse: samples cover {hist['classes_covered']} of {n} classes (largest class "
            f"{hist['largest_class_share']:.0%} of samples). Try train.loss=hinge or a lower train.lr_g"))
