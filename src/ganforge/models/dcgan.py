"""DCGAN: Radford, Metz and Chintala 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR. https://arxiv.org/abs/1511.06434

Implemented as the paper's section 3 and figure 1 describe:
- G: z (100) projected and reshaped to a 4x4 map (a 4x4 transposed convolution of the 1x1 z, which is the
  paper's "project and reshape"), then fractionally-strided convolutions (stride 2) that halve the channels
  while doubling the size, to a tanh output. At 64px: 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 ->
  64x64xC, the paper's figure 1. At 32px: 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32xC.
- D mirrors G with stride-2 convolutions and LeakyReLU(0.2), ending in one logit from the 4x4 map (a 4x4
  convolution over the whole map: the authors' linear layer on the flattened 4x4 features).
- Batch norm in every layer except G's output and D's input; ReLU in G; no pooling and no hidden
  fully-connected layers; weights from N(0, 0.02) (BN scales from N(1, 0.02)); Adam(2e-4, beta1 = 0.5).
- Kernel size of the stride-2 layers (`arch.kernel_size`): 5x5 is the paper's and its authors'. Figure 1
  draws 5x5 kernels, and the authors' code (github.com/Newmu/dcgan_code, faces/train_uncond_dcgan.py) uses
  5x5, stride 2, padding 2, its transposed convolutions sized to exactly double (here `output_padding=1`):
  `kernel_size=5`. The default 4 (stride 2, padding 1) is not the paper's: it is the PyTorch DCGAN example's
  (pytorch/examples dcgan/main.py), which most reimplementations copy. Both double (G) or halve (D) the
  size exactly at every layer.
Any power-of-two resolution >= 8 builds (tests use 16px with few channels); 32 and 64 are the paper-style
configurations. Grey and RGB images alike (`channels`).
Class-conditional option (`arch.num_classes` > 0; 0, the default, is the paper's unconditional model and
builds exactly the same modules and parameters as before the option existed):
- G: the one-hot label is concatenated to z before the project-and-reshape layer. A one-hot vector through
  that (linear) layer is the same function as a learned class embedding added to the projection, with no
  extra size to choose; the authors' conditional MNIST model (mnist/train_cond_dcgan.py) feeds its one-hot
  y the same way (and again at every layer, which we do not).
- D: the projection discriminator of Miyato and Koyama 2018, "cGANs with Projection Discriminator",
  https://arxiv.org/abs/1802.05637: logit = last_conv(h) + <embed(c), sum_ij h[:, :, i, j]>, h the 4x4
  feature map before D's last convolution. Global sum pooling, as in the authors' released code (their
  ResNet D sums its last features over space); it keeps the class term at the scale of the last
  convolution (which itself sums over the 4x4 map). Embeddings start from N(0, 0.02) like every weight here.
Differences from the paper, all settings: z ~ N(0, I) rather than U(-1, 1) (one latent law for every family
here); batch 64 by default (paper: 128, `--batch-size 128`); samples come from an EMA of G's weights with its
batch-norm statistics re-measured (`train.ema=false` samples G itself); bf16 autocast where the hardware has
native bf16 (`train.precision=fp32` for the paper's arithmetic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register_model
from .layers import check_labels


@dataclass
class DCGANConfig:
    z_dim: int = 100          # the paper's latent size
    base_channels: int = 0    # G's last hidden layer, doubling toward the 4x4 start; 0 = paper's:
                              # 128 at 64px (4x4x1024 start), 64 at 32px (4x4x256 start)
    max_channels: int = 1024  # cap on the doubling, for large resolutions
    kernel_size: int = 4      # of the stride-2 layers: 5 is the paper's figure 1 and the authors' code
                              # (Newmu/dcgan_code), 4 the PyTorch DCGAN example's; the default is to be
                              # chosen by measurement
    num_classes: int = 0      # 0 = unconditional (the paper's model); > 0: one-hot label into G,
                              # projection discriminator (Miyato and Koyama 2018)


# kernel size -> (padding, output_padding) that make a stride-2 layer double (G) or halve (D) exactly
_STRIDE2 = {4: (1, 0), 5: (2, 1)}


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
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig, resolution: int, channels: int):
        super().__init__()
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        chs = _channels(cfg, resolution)
        k, (p, op) = cfg.kernel_size, _STRIDE2[cfg.kernel_size]
        layers = [  # project and reshape: [N, z (+ one-hot c), 1, 1] -> [N, chs[0], 4, 4]
            nn.ConvTranspose2d(cfg.z_dim + cfg.num_classes, chs[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chs[0]), nn.ReLU(True)]
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, k, 2, p, op, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chs[-1], channels, k, 2, p, op), nn.Tanh()]  # no BN on G's output
        self.net = nn.Sequential(*layers)
        _init_weights(self)

    def forward(self, z, c=None):  # z: [N, z_dim], c: [N] int64 or None -> [N, C, H, W] in [-1, 1]
        c = check_labels(c, self.num_classes, z.shape[0])
        if c is not None:  # one-hot by scatter: no host sync, an out-of-range label is an error
            z = torch.cat([z, z.new_zeros(z.shape[0], self.num_classes).scatter_(1, c[:, None], 1)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig, resolution: int, channels: int):
        super().__init__()
        self.num_classes = cfg.num_classes
        chs = _channels(cfg, resolution)[::-1]  # mirror of G: last hidden layer first
        k, (p, _) = cfg.kernel_size, _STRIDE2[cfg.kernel_size]
        layers = [nn.Conv2d(channels, chs[0], k, 2, p), nn.LeakyReLU(0.2, True)]  # no BN on D's input
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            layers += [nn.Conv2d(c_in, c_out, k, 2, p, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(chs[-1], 1, 4, 1, 0)]  # the 4x4 map -> one logit
        self.net = nn.Sequential(*layers)
        if cfg.num_classes:  # only then: an unconditional D keeps the state dict it always had
            self.embed = nn.Embedding(cfg.num_classes, chs[-1])  # projection discriminator's class vectors
        _init_weights(self)

    def forward(self, x, c=None):  # x: [N, C, H, W], c: [N] int64 or None -> logits [N]
        c = check_labels(c, self.num_classes, x.shape[0])
        if c is None:
            return self.net(x).flatten()
        h = self.net[:-1](x)  # [N, chs[-1], 4, 4], the features the last conv reads
        # Projection (Miyato and Koyama 2018): + <embed(c), h summed over the 4x4 map>
        return self.net[-1](h).flatten() + (self.embed(c) * h.sum(dim=(2, 3))).sum(dim=1)


@register_model(
    "dcgan",
    config_cls=DCGANConfig,
    arxiv="1511.06434",
    added=("Convolutions that train reliably: strided convolutions instead of pooling, batch normalisation in "
           "both networks, no fully connected hidden layers, ReLU in G and leaky ReLU in D, Adam at lr 0.0002 "
           "with beta1 0.5. It made GANs a tool for images rather than a curiosity, and showed structure in the "
           "latent space (smooth walks, vector arithmetic)."),
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
    if cfg.kernel_size not in _STRIDE2:
        raise ValueError(f"arch.kernel_size must be 4 (PyTorch DCGAN example) or 5 (the authors' code), "
                         f"got {cfg.kernel_size}")
    if cfg.num_classes < 0:  # -1 ("as many as the data has") must be resolved before building
        raise ValueError(f"arch.num_classes must be >= 0 (0 = unconditional), got {cfg.num_classes}")
    return Generator(cfg, resolution, channels), Discriminator(cfg, resolution, channels)
