"""The original GAN: Goodfellow et al. 2014, "Generative Adversarial Nets", NeurIPS.
https://arxiv.org/abs/1406.2661

Implemented as in the paper's MNIST experiment (its released pylearn2 configuration):
- G: an MLP, z (100) -> 1200 ReLU -> 1200 ReLU -> pixels. The paper's sigmoid output on [0, 1] becomes tanh
  on our [-1, 1] data (the same function up to an affine change of variables).
- D: an MLP of two maxout layers (240 units x 5 pieces) with dropout (0.2 on the input, 0.5 on hidden layers)
  and one logit. Dropout is the paper's; it is what lets this D avoid memorising the training set.
- Losses: the minimax value function of eq. (1) and the non-saturating G loss the paper recommends in
  section 3 (`--set train.loss=minimax` or `nonsaturating`, the default).
Not implemented: the paper's SGD-with-momentum schedule (we default to Adam; `train.optimizer=sgd` gives SGD
with the paper's starting momentum 0.5), its uniform noise (z is N(0, I) like every family here), the
max-norm constraint on maxout weights (1.9365) and its initialisation ranges (PyTorch's defaults instead);
its batch of 100 is `--batch-size 100` (default 64).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..registry import register_model


@dataclass
class GANConfig:
    z_dim: int = 100          # the paper's noise size
    g_hidden: int = 1200      # G's two ReLU layers (paper: 1200 each)
    d_units: int = 240        # D's maxout units per layer (paper: 240)
    d_pieces: int = 5         # linear pieces per maxout unit (paper: 5)
    d_input_dropout: float = 0.2   # paper: include probability 0.8 on D's input
    d_dropout: float = 0.5         # paper: include probability 0.5 on D's hidden layers


class Maxout(nn.Module):
    """Goodfellow et al. 2013: each unit is the max over `pieces` affine maps."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x):
        y = self.linear(x)  # [N, units * pieces]
        return y.view(-1, self.units, self.pieces).amax(dim=2)  # [N, units]


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig, resolution: int, channels: int):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.out_shape = (channels, resolution, resolution)
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim, cfg.g_hidden), nn.ReLU(),
            nn.Linear(cfg.g_hidden, cfg.g_hidden), nn.ReLU(),
            nn.Linear(cfg.g_hidden, channels * resolution * resolution), nn.Tanh(),
        )

    def forward(self, z):  # z: [N, z_dim] -> [N, C, H, W] in [-1, 1]
        return self.net(z).view(z.shape[0], *self.out_shape)


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig, resolution: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(cfg.d_input_dropout),
            Maxout(channels * resolution * resolution, cfg.d_units, cfg.d_pieces),
            nn.Dropout(cfg.d_dropout),
            Maxout(cfg.d_units, cfg.d_units, cfg.d_pieces),
            nn.Dropout(cfg.d_dropout),
            nn.Linear(cfg.d_units, 1),
        )

    def forward(self, x):  # x: [N, C, H, W] -> logits [N]
        return self.net(x).squeeze(1)


@register_model(
    "gan",
    config_cls=GANConfig,
    paper="Goodfellow et al. 2014, Generative Adversarial Nets, https://arxiv.org/abs/1406.2661",
    train_defaults={"resolution": 28, "loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4,
                    "betas": (0.5, 0.999), "ema": True},
    resolutions=(28,),
)
def build(cfg: GANConfig, resolution: int, channels: int) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) of the 2014 GAN for images of `channels` x `resolution` x `resolution`."""
    for name in ("z_dim", "g_hidden", "d_units", "d_pieces"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"arch.{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("d_input_dropout", "d_dropout"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ValueError(f"arch.{name} must lie in [0, 1), got {getattr(cfg, name)}")
    return Generator(cfg, resolution, channels), Discriminator(cfg, resolution, channels)
