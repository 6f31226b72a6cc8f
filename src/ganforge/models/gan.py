"""The original GAN: Goodfellow et al. 2014, "Generative Adversarial Nets", NeurIPS.
https://arxiv.org/abs/1406.2661

Implemented as in the paper's MNIST experiment (its released pylearn2 configuration, mnist.yaml in
github.com/goodfeli/adversarial):
- G: an MLP, z (100) -> 1200 ReLU -> 1200 ReLU -> pixels. The paper's sigmoid output on [0, 1] becomes tanh
  on our [-1, 1] data (the same function up to an affine change of variables).
- D: an MLP of two maxout layers (240 units x 5 pieces) with dropout (0.2 on the input, 0.5 on hidden layers)
  and one logit. Dropout is the paper's; it is what lets this D avoid memorising the training set.
- Losses: the minimax value function of eq. (1) and the non-saturating G loss the paper recommends in
  section 3 (`--set train.loss=minimax` or `nonsaturating`, the default).
The paper's optimiser, as mnist.yaml sets it (pylearn2 SGD); `--set train.optimizer=sgd` gets all of it
(learning rate, decay, floor and momentum ramp), unless those keys are set too:
- learning rate 0.1, divided by 1.000004 after every update (pylearn2 `ExponentialDecay`:
  lr_t = 0.1 / 1.000004**t), never below 1e-6 (reached only after about 2.9M updates; after 50k it is 0.082);
- momentum 0.5 (pylearn2 `Momentum`, classical, not Nesterov), raised linearly per epoch to 0.7
  (`MomentumAdjustor`, start epoch 1, saturate epoch 250); an epoch is 50,000 images (the first 50k of
  MNIST's training set; the last 10k are its validation set), so 500 updates at batch 100;
- batch 100; one update per batch changes G and D together (k = 1, the paper's algorithm 1), both gradients
  taken from the same forward pass (`AdversaryCost2`); D's objective is half the sum of its real and fake
  cross-entropies (a factor 0.5 that matters with SGD), G's is the non-saturating -log D(G(z));
- no weight decay and no max-norm constraint in mnist.yaml (the 1.9365 max-norm is in the TFD configs);
  initial weights uniform in +-0.005 (D) and +-0.05 (G), G's output bias from the data's pixel marginals.
Not implemented: D's factor 0.5 (our D loss is the plain sum; with SGD, halve train.lr_d for the paper's
step), its uniform noise (z is N(0, I) like every family here) and its initialisation
(PyTorch's defaults instead); its batch of 100 is `--batch-size 100` (default 64).
Class-conditional option (`arch.num_classes` > 0; 0, the default, is the paper's unconditional model and
builds exactly the modules and parameters it always had): the conditional GAN of Mirza and Osindero 2014,
"Conditional Generative Adversarial Nets", https://arxiv.org/abs/1411.1784, in its simpler, common form: the
one-hot label is concatenated to z at G's input and to the flattened image at D's input (after D's input
dropout, so the label is never dropped). The paper instead maps z and y through separate hidden layers
first (G: 200 and 1000 ReLU units, joined in a 1200-unit layer; D: maxout 240x5 for x and 50x5 for y,
joined in a 240x4 maxout layer); that is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register_model
from .layers import check_labels


@dataclass
class GANConfig:
    z_dim: int = 100          # the paper's noise size
    g_hidden: int = 1200      # G's two ReLU layers (paper: 1200 each)
    d_units: int = 240        # D's maxout units per layer (paper: 240)
    d_pieces: int = 5         # linear pieces per maxout unit (paper: 5)
    d_input_dropout: float = 0.2   # paper: include probability 0.8 on D's input
    d_dropout: float = 0.5         # paper: include probability 0.5 on D's hidden layers
    num_classes: int = 0      # 0 = unconditional (the paper's model); > 0: one-hot label concatenated to
                              # G's and D's inputs (Mirza and Osindero 2014)


class Maxout(nn.Module):
    """Goodfellow et al. 2013: each unit is the max over `pieces` affine maps."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x):
        y = self.linear(x)  # [N, units * pieces]
        return y.view(-1, self.units, self.pieces).amax(dim=2)  # [N, units]


def _one_hot(c, num_classes: int, like):
    """Labels [N] -> one-hot [N, num_classes] in `like`'s dtype; no host sync, out-of-range is an error."""
    return like.new_zeros(c.shape[0], num_classes).scatter_(1, c[:, None], 1)


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig, resolution: int, channels: int):
        super().__init__()
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.out_shape = (channels, resolution, resolution)
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim + cfg.num_classes, cfg.g_hidden), nn.ReLU(),  # [z, one-hot c]
            nn.Linear(cfg.g_hidden, cfg.g_hidden), nn.ReLU(),
            nn.Linear(cfg.g_hidden, channels * resolution * resolution), nn.Tanh(),
        )

    def forward(self, z, c=None):  # z: [N, z_dim], c: [N] int64 or None -> [N, C, H, W] in [-1, 1]
        c = check_labels(c, self.num_classes, z.shape[0])
        h = z if c is None else torch.cat([z, _one_hot(c, self.num_classes, z)], dim=1)
        return self.net(h).view(z.shape[0], *self.out_shape)


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig, resolution: int, channels: int):
        super().__init__()
        self.num_classes = cfg.num_classes
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(cfg.d_input_dropout),
            Maxout(channels * resolution * resolution + cfg.num_classes, cfg.d_units, cfg.d_pieces),  # [x, c]
            nn.Dropout(cfg.d_dropout),
            Maxout(cfg.d_units, cfg.d_units, cfg.d_pieces),
            nn.Dropout(cfg.d_dropout),
            nn.Linear(cfg.d_units, 1),
        )

    def forward(self, x, c=None):  # x: [N, C, H, W], c: [N] int64 or None -> logits [N]
        c = check_labels(c, self.num_classes, x.shape[0])
        if c is None:
            return self.net(x).squeeze(1)
        h = self.net[:2](x)  # flattened, input dropout applied: [N, C * H * W]
        h = torch.cat([h, _one_hot(c, self.num_classes, h)], dim=1)
        return self.net[2:](h).squeeze(1)


@register_model(
    "gan",
    config_cls=GANConfig,
    arxiv="1406.2661",
    added=("The adversarial game itself: a generator turns noise into samples while a discriminator learns to "
           "tell them from real data, and at the game's equilibrium the generator's distribution is the data's. "
           "Both networks are multilayer perceptrons (maxout and dropout in D). The paper also gives the "
           "non-saturating generator loss, which trains where the minimax one stalls early on, and which "
           "ganforge uses by default."),
    paper="Goodfellow et al. 2014, Generative Adversarial Nets, https://arxiv.org/abs/1406.2661",
    train_defaults={"resolution": 28, "loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4,
                    "betas": (0.5, 0.999), "ema": True},
    # mnist.yaml: lr 0.1 / 1.000004**t (floor 1e-6); momentum 0.5 -> 0.7 linearly over 250 epochs of 50k
    optimizer_defaults={"sgd": {"lr_g": 0.1, "lr_d": 0.1, "betas": (0.5, 0.999), "lr_decay": 1.000004,
                                "lr_min": 1e-6, "momentum_final": 0.7, "momentum_ramp_kimg": 12500.0}},
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
    if cfg.num_classes < 0:  # -1 ("as many as the data has") must be resolved before building
        raise ValueError(f"arch.num_classes must be >= 0 (0 = unconditional), got {cfg.num_classes}")
    return Generator(cfg, resolution, channels), Discriminator(cfg, resolution, channels)
