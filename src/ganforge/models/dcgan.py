"""DCGAN: Radford, Metz and Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR. https://arxiv.org/abs/1511.06434

Implemented as the paper's section 3 and figure 1 describe:
- G: z (100) projected and reshaped to a 4x4 map (a 4x4 transposed convolution of the 1x1 z, which is the
  paper's "project and reshape"), then fractionally-strided 4x4 convolutions (stride 2) that halve the
  channels while doubling the size, to a tanh output. At 64px: 4x4x1024 -> 8x8x512 -> 16x16x256 ->
  32x32x128 -> 64x64xC, the paper's figure 1. At 32px: 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32xC.
- D mirrors G with strided 4x4 convolutions and LeakyReLU(0.2), ending in one logit from the 4x4 map.
- Batch norm in every layer except G's output and D's input; ReLU in G; no pooling and no hidden
  fully-connected layers; weights from N(0, 0.02) (BN scales from N(1, 0.02)); Adam(2e-4, beta1 = 0.5).
Any power-of-two resolution >= 8 builds (tests use 16px with few channels); 32 and 64 are the paper-style
configurations. Grey and RGB images alike (`channels`).
Differences from the paper, all settings: z ~ N(0, I) rather than U(-1, 1) (one latent law for every family
here); batch 64 by default (paper: 128, `--batch-size 128`); samples come from an EMA of G's weights with its
batch-norm statistics re-measured (`train.ema=false` samples G itself); bf16 autocast where the hardware has
native bf16 (`train.precision=fp32` for the paper's arithmetic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from ..registry import register_model


@dataclass
class DCGANConfig:
    z_dim: int = 100          # the paper's latent size
    base_channels: int = 0    # G's last hidden layer, doubling toward the 4x4 start; 0 = paper's:
                              # 128 at 64px (4x4x1024 start), 64 at 32px (4x4x256 start)
    max_channels: int = 1024  # cap on the doubling, for large resolutions


def _channels(cfg: DCGANConfig, resolution: int) -> list[int]:
    """Hidden channel counts from the 4x4 map up to the last hidden layer (G's order)."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"DCGAN needs a power-of-two resolution >= 8, got {resolution}")
    n_up = int(math.log2(resolution)) - 2  # 4 -> resolution in n_up doublings
    base = cfg.base_channels or (2 * resolution if resolution <= 64 else 128)
    return [min(base * 2 ** (n_up - 1 - i), cfg.max_channels) for i in range(n_up)]


def _init_weights(module: nn.Module) -> None:
    # Paper: "All weights were initialized from a zero-centered Normal distribution with std 0.02".
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig, resolution: int, channels: int):
        super().__init__()
        self.z_dim = cfg.z_dim
        chs = _channels(cfg, resolution)
        layers = [  # project and reshape: [N, z, 1, 1] -> [N, chs[0], 4, 4]
            nn.ConvTranspose2d(cfg.z_dim, chs[0], 4, 1, 0, bias=False), nn.BatchNorm2d(chs[0]), nn.ReLU(True)]
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chs[-1], channels, 4, 2, 1), nn.Tanh()]  # no BN on G's output
        self.net = nn.Sequential(*layers)
        _init_weights(self)

    def forward(self, z):  # z: [N, z_dim] -> [N, C, H, W] in [-1, 1]
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig, resolution: int, channels: int):
        super().__init__()
        chs = _channels(cfg, resolution)[::-1]  # mirror of G: last hidden layer first
        layers = [nn.Conv2d(channels, chs[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no BN on D's input
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(chs[-1], 1, 4, 1, 0)]  # the 4x4 map -> one logit
        self.net = nn.Sequential(*layers)
        _init_weights(self)

    def forward(self, x):  # x: [N, C, H, W] -> logits [N]
        return self.net(x).flatten()


@register_model(
    "dcgan",
    config_cls=DCGANConfig,
    paper="Radford et al. 2016, Unsupervised Representation Learning with Deep Convolutional GANs, "
          "https://arxiv.org/abs/1511.06434",
    train_defaults={"resolution": 32, "loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4,
                    "betas": (0.5, 0.999), "ema": True},
    resolutions=(32, 64),
)
def build(cfg: DCGANConfig, resolution: int, channels: int) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) of DCGAN for images of `channels` x `resolution` x `resolution`."""
    if cfg.z_dim < 1 or cfg.base_channels < 0 or cfg.max_channels < 1:
        raise ValueError(f"arch.z_dim and arch.max_channels must be >= 1 and arch.base_channels >= 0, got "
                         f"{cfg.z_dim}, {cfg.max_channels}, {cfg.base_channels}")
    return Generator(cfg, resolution, channels), Discriminator(cfg, resolution, channels)
