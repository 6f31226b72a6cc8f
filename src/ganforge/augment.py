"""Differentiable augmentation of D's inputs (real and fake alike), for any GAN.

- DiffAugment: Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training", https://arxiv.org/abs/2006.10738. The three policy ops of the official code
  (mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py), same ranges: `color` (brightness, saturation,
  contrast), `translation` (integer shift up to 1/8 of the side, zero fill), `cutout` (a zeroed square of
  half the side, centred anywhere in the image and clipped at its border). `augment(x, ops)` with p=1.
- ADA: Karras, Aittala, Hellsten, Laine, Lehtinen & Aila 2020, "Training Generative Adversarial Networks
  with Limited Data", https://arxiv.org/abs/2006.06676. Implemented: every op applied to every sample
  independently with probability p (`augment(x, ops, p)`), and the overfitting heuristic
  r_t = E[sign(D(real))] that steers p (`AdaptiveP`). Not implemented: ADA's own 18-op pipeline (flips,
  rotations, reflect-padded geometric transforms, hue, filtering, noise); the DiffAugment ops above are the
  ones gated by p. ADA's argument that augmentations do not leak into G (paper, section 2.2) needs p < 1
  and in its experiments held up to about p = 0.8; the controller does not cap p, so watch it in the logs.

Nothing here reads a tensor back to the host: p may be a 0-dim tensor on the GPU that the controller
updates in place, and the CUDA stream never waits on it. All randomness comes from torch's global RNG on
x's device, and the count of numbers drawn depends only on x's shape and the ops, not on p, so a run that
restores torch's RNG state replays its augmentations exactly whatever p it had reached.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" -> (); an unknown op is a ValueError."""
    ops = tuple(op.strip() for op in policy.split(",") if op.strip())
    for op in ops:
        if op not in POLICIES:
            raise ValueError(f"unknown augmentation {op!r} in policy {policy!r}; choose from {', '.join(POLICIES)}")
    return ops


def _gates(n: int, k: int, p: torch.Tensor | float, device) -> torch.Tensor:
    # [n, k] bool: which samples get each of k transforms. rand in [0, 1): p=1 -> all, p=0 -> none.
    return torch.rand(n, k, device=device) < p


def _color(x: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    n = x.shape[0]
    gate = _gates(n, 3, p, x.device)  # [N, 3]: brightness, saturation, contrast
    u = torch.rand(n, 3, device=x.device)  # drawn in float32 whatever x's dtype
    # An ungated transform gets the identity factor, so the three run as three full-size ops, not six.
    one = torch.ones((), device=x.device)
    shift = torch.where(gate[:, 0], u[:, 0] - 0.5, 0.0).to(x.dtype).view(n, 1, 1, 1)  # brightness U(-0.5, 0.5)
    sat = torch.where(gate[:, 1], u[:, 1] * 2, one).to(x.dtype).view(n, 1, 1, 1)  # saturation U(0, 2)
    con = torch.where(gate[:, 2], u[:, 2] + 0.5, one).to(x.dtype).view(n, 1, 1, 1)  # contrast U(0.5, 1.5)
    y = x + shift
    # lerp(mean, y, a) = mean + a * (y - mean); a=1 gives y back (up to rounding)
    y = torch.lerp(y.mean(dim=1, keepdim=True), y, sat)  # around the per-pixel channel mean: no-op on 1 channel
    y = torch.lerp(y.mean(dim=(1, 2, 3), keepdim=True), y, con)  # around the per-image mean
    return torch.where(gate.any(dim=1).view(n, 1, 1, 1), y, x)  # untouched samples come back bitwise


def _translation(x: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    n, c, h, w = x.shape
    sh, sw = h // 8, w // 8
    gate = _gates(n, 1, p, x.device)  # [N, 1]
    u = torch.rand(n, 2, device=x.device)
    # integer shifts uniform in [-s, s] (the official randint range); zero for ungated samples
    ty = ((u[:, :1] * (2 * sh + 1)).floor().clamp(max=2 * sh) - sh).long() * gate  # [N, 1]
    tx = ((u[:, 1:] * (2 * sw + 1)).floor().clamp(max=2 * sw) - sw).long() * gate  # [N, 1]
    # out[i, j] = x[i - ty, j - tx], zero where that falls outside (the official zero padding):
    # pad by the largest shift once, then one gather over all samples
    wp = w + 2 * sw
    rows = torch.arange(sh, h + sh, device=x.device) - ty  # [N, H], rows of the padded image
    cols = torch.arange(sw, w + sw, device=x.device) - tx  # [N, W]
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, h * w)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # pad and gather NHWC's pixel axis so the result stays channels_last, with no layout copy
        flat = F.pad(x.permute(0, 2, 3, 1), [0, 0, sw, sw, sh, sh]).reshape(n, -1, c)
        return flat.gather(1, index[:, :, None].expand(n, h * w, c)).view(n, h, w, c).permute(0, 3, 1, 2)
    flat = F.pad(x, [sw, sw, sh, sh]).reshape(n, c, -1)
    return flat.gather(2, index[:, None, :].expand(n, c, h * w)).view(n, c, h, w)


def _cutout(x: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    n, c, h, w = x.shape
    ch, cw = h // 2, w // 2
    gate = _gates(n, 1, p, x.device)  # [N, 1]
    u = torch.rand(n, 2, device=x.device)
    # the square's centre, uniform over the official range [0, side + (1 - size % 2)): it may hang off the edge
    cy = (u[:, :1] * (h + 1 - ch % 2)).floor().long()  # [N, 1]
    cx = (u[:, 1:] * (w + 1 - cw % 2)).floor().long()
    rows = torch.arange(h, device=x.device) - (cy - ch // 2)  # [N, H], row offset inside the square
    cols = torch.arange(w, device=x.device) - (cx - cw // 2)
    cut = (((rows >= 0) & (rows < ch)) & gate)[:, :, None] & ((cols >= 0) & (cols < cw))[:, None, :]  # [N, H, W]
    return x * (~cut)[:, None].to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def augment(x: torch.Tensor, ops: tuple[str, ...], p: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Apply `ops` (in order) to x [N, C, H, W]; each op hits each sample independently with probability p.

    p=1 is DiffAugment, p a 0-dim tensor on x's device is ADA (never read back to the host). Returns a
    tensor of x's shape, dtype and device, differentiable w.r.t. x; p=0 returns x's values bitwise.
    """
    if x.ndim != 4:
        raise ValueError(f"augment expects [N, C, H, W], got shape {tuple(x.shape)}")
    for op in ops:
        if op not in _OPS:
            raise ValueError(f"unknown augmentation {op!r}; choose from {', '.join(POLICIES)}")
        x = _OPS[op](x, p)
    return x


class AdaptiveP:
    """ADA's controller (Karras et al. 2020, section 3): every `interval` D steps,
    p += sign(r_t - target) * batch_size * interval / (ada_kimg * 1000), clamped to [0, 1], where
    r_t = E[sign(D(real))] over the reals seen since the last update. p goes from 0 to 1 in ada_kimg
    thousand images if D stays overconfident.

    p lives in a 0-dim float32 tensor on `device`; all updates are tensor ops (no host sync).
    """

    def __init__(self, target: float = 0.6, interval: int = 4, ada_kimg: float = 500.0, p_init: float = 0.0,
                 device="cpu"):
        if interval < 1 or ada_kimg <= 0:
            raise ValueError(f"AdaptiveP needs interval >= 1 and ada_kimg > 0, got {interval}, {ada_kimg}")
        self.target, self.interval, self.ada_kimg = target, interval, ada_kimg
        self.device = torch.device(device)
        self.p = torch.tensor(float(p_init), dtype=torch.float32, device=self.device)
        self._sign_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        self._count = torch.zeros((), dtype=torch.float32, device=self.device)
        self._rt = torch.zeros((), dtype=torch.float32, device=self.device)
        self._calls = 0  # a host counter: it only ever depends on how many times step() ran

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate sign(D(real)) of one batch of real logits (any shape)."""
        real_logits = real_logits.detach()
        self._sign_sum += torch.sign(real_logits).sum(dtype=torch.float32)
        self._count += real_logits.numel()

    def step(self, batch_size: int) -> bool:
        """Call once per D step; every `interval` calls, move p from the accumulated r_t and reset. Returns
        whether p was adjusted on this call."""
        self._calls += 1
        if self._calls % self.interval:
            return False
        from .train.dist import all_sum_, world

        batch_size *= world().size  # the global batch: p moves per image shown, on all ranks together
        all_sum_(self._sign_sum)  # under torchrun: r_t over every rank's reals, so p moves alike everywhere
        all_sum_(self._count)
        seen = self._count > 0  # no observe() since the last update: keep p and r_t as they are
        rt = self._sign_sum / self._count.clamp(min=1)
        adjust = torch.sign(rt - self.target) * (batch_size * self.interval / (self.ada_kimg * 1000))
        self.p.copy_(torch.where(seen, (self.p + adjust).clamp(0.0, 1.0), self.p))
        self._rt.copy_(torch.where(seen, rt, self._rt))
        self._sign_sum.zero_()
        self._count.zero_()
        return True

    def rt(self) -> torch.Tensor:
        """The last measured r_t (0-dim tensor, for logging)."""
        return self._rt

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"p": self.p.clone(), "sign_sum": self._sign_sum.clone(), "count": self._count.clone(),
                "rt": self._rt.clone(), "calls": torch.tensor(self._calls, dtype=torch.int64)}

    def load_state_dict(self, d) -> None:
        for name, dst in (("p", self.p), ("sign_sum", self._sign_sum), ("count", self._count), ("rt", self._rt)):
            dst.copy_(d[name])
        self._calls = int(d["calls"])  # load time only, never in the training step
        from .train.dist import world

        if world().rank:  # the checkpoint's partial sums are rank 0's: under torchrun only rank 0 keeps them
            self._sign_sum.zero_()
            self._count.zero_()


@dataclass
class AugmentConfig:
    """The `recipe.*` keys of D's augmentation, shared by every recipe that offers it."""
    augment: str = ""          # D's differentiable augmentation: comma-separated ops of color, translation,
                               # cutout ("" = none, the papers' setting)
    augment_p: float = 1.0     # probability of each op per image: 1 = DiffAugment (ignored with ada)
    ada: bool = False          # adapt p to D's overfitting (ADA): starts at 0; r_t = E[sign(D(real))] held near
                               # ada_target
    ada_target: float = 0.6    # ADA's r_t target (the paper's 0.6)
    ada_kimg: float = 100.0    # thousands of images for p to move from 0 to 1 (paper: 500, for week-long runs)
    ada_interval: int = 4      # D steps between adjustments of p (paper: 4)


def check_augment(r, loss: str | None = None) -> None:
    """Clear errors for bad augmentation keys of a recipe config `r`. With `loss` (train.loss), ADA is refused
    where that loss has no decision boundary for its heuristic to read (a WGAN critic's scores). The
    unconditional recipe passes none: it took ADA with any loss before this check existed, and its saved runs
    must still resume."""
    from .losses import DECISION_BOUNDARY
    from .registry import GanforgeError

    try:
        parse_policy(r.augment)
    except ValueError as e:
        raise GanforgeError(f"recipe.augment: {e}") from None
    if r.ada and not r.augment:
        raise GanforgeError("recipe.ada adapts the strength of recipe.augment's ops, and recipe.augment is empty; "
                            "set recipe.augment=color,translation,cutout")
    if r.ada and loss is not None and loss not in DECISION_BOUNDARY:
        raise GanforgeError(f"recipe.ada cannot be used with train.loss={loss}: ADA reads sign(D(real)), and this "
                            f"loss's scores have no decision boundary; set recipe.augment_p (a fixed strength) instead")
    if not 0 <= r.augment_p <= 1:
        raise GanforgeError(f"recipe.augment_p must lie in [0, 1], got {r.augment_p}")
    if not 0 < r.ada_target < 1 or not r.ada_kimg > 0 or r.ada_interval < 1:
        raise GanforgeError(f"recipe.ada_target must lie in (0, 1), recipe.ada_kimg be > 0 and "
                            f"recipe.ada_interval >= 1; got {r.ada_target}, {r.ada_kimg}, {r.ada_interval}")


class DAugment:
    """A recipe's augmentation of D's inputs, from its `AugmentConfig` keys: call it on every image D scores
    (real, fake, and a penalty's inputs; with respect to what a penalty's gradient is taken is the recipe's
    choice: R1 through the ops, WGAN-GP at the augmented mix).

    With ADA, p starts at 0 and follows r_t = E[sign(D(real) - boundary)] (`observe`). Whether anything is
    augmented at all switches on the first time p rises above 0 (read on the host only when p was just adjusted,
    every ada_interval D steps, as the official code reads its statistics) and stays on: while D does not
    overfit the step costs nothing extra, and once it does, no more host reads. p and that switch are recipe state (`state_dict`), so a
    resumed run augments exactly as the original did.
    """

    def __init__(self, rc, device, boundary: float | None = 0.0):
        """`boundary`: the loss's decision boundary (losses.DECISION_BOUNDARY: 0, or 0.5 for LSGAN), around
        which ADA reads the sign of D's real scores."""
        self.ops = parse_policy(rc.augment)
        self.boundary = boundary or 0.0
        self.p_fixed = rc.augment_p
        self.ada = (AdaptiveP(rc.ada_target, rc.ada_interval, rc.ada_kimg, 0.0, device)
                    if self.ops and rc.ada else None)
        self.on = bool(self.ops) and self.ada is None and rc.augment_p > 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return x
        return augment(x, self.ops, self.ada.p if self.ada is not None else self.p_fixed)

    def observe(self, real_logits: torch.Tensor) -> dict:
        """Once per D step with D's logits on the (augmented) reals: ADA's bookkeeping; the stats to log."""
        if self.ada is None:
            return {}
        self.ada.observe(real_logits.detach() - self.boundary)
        if self.ada.step(real_logits.shape[0]) and not self.on:  # p was just adjusted
            self.on = float(self.ada.p) > 0
        return {"aug/p": self.ada.p.detach().clone(), "aug/rt": self.ada.rt().detach().clone()}

    def state_dict(self) -> dict:
        if self.ada is None:
            return {}
        return {"ada": {k: v.tolist() for k, v in self.ada.state_dict().items()}, "augmenting": self.on}

    def load_state_dict(self, state: dict) -> None:
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict({k: torch.tensor(v) for k, v in state["ada"].items()})
            self.on = bool(state["augmenting"])
