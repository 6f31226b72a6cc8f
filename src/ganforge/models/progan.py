"""Progressive GAN: Karras, Aila, Laine and Lehtinen 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", ICLR. https://arxiv.org/abs/1710.10196

Implemented as the paper (sections 2-4, appendix A, table 2) and the authors' code
(tkarras/progressive_growing_of_gans, networks.py, TensorFlow 1) build it:
- G: z (512) pixel-normalised, a dense layer to a 4x4 map (gain sqrt(2)/4, as the official code), a 3x3
  conv; then per doubling: nearest-neighbour upsampling and two 3x3 convs. LeakyReLU(0.2) and pixelwise
  feature normalisation after every conv. toRGB is a 1x1 conv with a linear output.
- D mirrors G: fromRGB (1x1 conv, LeakyReLU), per halving two 3x3 convs and 2x2 average pooling; before the
  last block, minibatch standard deviation (group 4) adds one feature map; then a 3x3 conv, a dense layer and
  a linear output. No normalisation in D.
- Equalised learning rate everywhere (weights N(0, 1), scaled at run time by He's constant).
- Widths per resolution as the paper's table 2: nf(R) = min(2 * fmap_base / R, fmap_max), 512 up to 32x32,
  halving to 16 at 1024x1024 with fmap_base 8192, fmap_max 512. A CPU-sized network lowers both.
- Growing (models/growing.py): both networks are built whole and run the stage the schedule sets. While a
  resolution fades in, G's output is lerp(upsampled toRGB of the previous block, toRGB of the new block,
  alpha) and D's input path lerp(fromRGB of the 2x2-pooled image into the previous block, the new block's
  output, alpha); at alpha = 0 both compute exactly the previous stage.
G's output is linear, as in the paper, while training; in eval mode (sampling) it is clipped to [-1, 1], as
the official code clips when it writes images. G outputs at its current stage's resolution; the loop and
sampling upscale a stage below the final one to the run's resolution (nearest) for grids and samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register_model
from .growing import Growing, check_growth_resolution
from .layers import (EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, downscale2d,
                     upscale2d)


@dataclass
class ProGANConfig:
    z_dim: int = 512              # the paper's latent size
    fmap_base: int = 8192         # widths: nf(R) = min(2 * fmap_base / R, fmap_max), at least fmap_min
    fmap_max: int = 512
    fmap_min: int = 1
    normalize_latents: bool = True  # pixel norm on z (the official code's default)
    mbstd_group: int = 4          # minibatch-stddev group size (0 or 1 = no minibatch stddev)


def nf(cfg: ProGANConfig, resolution: int) -> int:
    """Feature maps at `resolution` (the paper's table 2 with the defaults)."""
    return max(cfg.fmap_min, min(int(2 * cfg.fmap_base / resolution), cfg.fmap_max))


def _check(cfg: ProGANConfig, resolution: int) -> None:
    check_growth_resolution(resolution)
    if cfg.z_dim < 1 or cfg.fmap_base < 1 or cfg.fmap_max < 1 or cfg.fmap_min < 1 or cfg.mbstd_group < 0:
        raise ValueError("arch.z_dim, fmap_base, fmap_max and fmap_min must be >= 1 and mbstd_group >= 0")


class _Act(nn.Sequential):
    """LeakyReLU(0.2), then pixel norm where asked (G)."""

    def __init__(self, pixel_norm: bool):
        super().__init__(nn.LeakyReLU(0.2), *([PixelNorm()] if pixel_norm else []))


class ProGANGenerator(Growing):
    def __init__(self, cfg: ProGANConfig, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self._init_growth(resolution)
        self.z_dim, self.channels = cfg.z_dim, channels
        self.latent_norm = PixelNorm() if cfg.normalize_latents else nn.Identity()
        c4 = nf(cfg, 4)
        self.c4 = c4
        # the official code's dense layer: no bias of its own; one bias per channel after the reshape to 4x4
        self.dense = EqualizedLinear(cfg.z_dim, c4 * 16, gain=2 ** 0.5 / 4, bias=False)
        self.dense_bias = nn.Parameter(torch.zeros(1, c4, 1, 1))
        self.head = nn.Sequential(_Act(True), EqualizedConv2d(c4, c4, 3), _Act(True))
        self.blocks = nn.ModuleDict()
        self.to_rgb = nn.ModuleDict({"4": EqualizedConv2d(c4, channels, 1, gain=1.0)})
        for r in self.resolutions[1:]:
            c_in, c = nf(cfg, r // 2), nf(cfg, r)
            self.blocks[str(r)] = nn.Sequential(EqualizedConv2d(c_in, c, 3), _Act(True),
                                                EqualizedConv2d(c, c, 3), _Act(True))
            self.to_rgb[str(r)] = EqualizedConv2d(c, channels, 1, gain=1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dense(self.latent_norm(z)).reshape(-1, self.c4, 4, 4) + self.dense_bias
        x = self.head(x)
        prev = x
        for r in self.resolutions[1:]:
            if r > self.stage_resolution:
                break
            prev = x
            x = self.blocks[str(r)](upscale2d(x))
        img = self.to_rgb[str(self.stage_resolution)](x)
        if self.fading:
            old = upscale2d(self.to_rgb[str(self.stage_resolution // 2)](prev))
            img = self.fade(old, img)
        return img if self.training else img.clamp(-1, 1)


class ProGANDiscriminator(Growing):
    def __init__(self, cfg: ProGANConfig, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self._init_growth(resolution)
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for r in self.resolutions:
            self.from_rgb[str(r)] = nn.Sequential(EqualizedConv2d(channels, nf(cfg, r), 1), nn.LeakyReLU(0.2))
            if r > 4:
                self.blocks[str(r)] = nn.Sequential(
                    EqualizedConv2d(nf(cfg, r), nf(cfg, r), 3), nn.LeakyReLU(0.2),
                    EqualizedConv2d(nf(cfg, r), nf(cfg, r // 2), 3), nn.LeakyReLU(0.2))
        c4 = nf(cfg, 4)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group) if cfg.mbstd_group > 1 else nn.Identity()
        extra = 1 if cfg.mbstd_group > 1 else 0
        self.final = nn.Sequential(EqualizedConv2d(c4 + extra, c4, 3), nn.LeakyReLU(0.2), nn.Flatten(),
                                   EqualizedLinear(c4 * 16, nf(cfg, 2)), nn.LeakyReLU(0.2))
        self.out = EqualizedLinear(nf(cfg, 2), 1, gain=1.0)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.stage_resolution
        x = self.from_rgb[str(r)](img)
        if r > 4:
            x = downscale2d(self.blocks[str(r)](x))
            if self.fading:
                old = self.from_rgb[str(r // 2)](downscale2d(img))
                x = self.fade(old, x)
            while r > 8:
                r //= 2
                x = downscale2d(self.blocks[str(r)](x))
        x = self.final(self.mbstd(x))
        # The score in fp32 even under bf16 autocast: the output bias learns only from the drift term
        # (0.001 * D(real)^2; the Wasserstein terms cancel in it), which bf16 rounds to zero.
        with torch.autocast(x.device.type, enabled=False):
            return self.out(x.float()).squeeze(1)


@register_model(
    "progan", config_cls=ProGANConfig, recipe="progressive",
    arxiv="1710.10196",
    added=("Growing: both networks start at 4x4 and gain a block at each doubling, each new block faded in, so "
           "coarse structure is learned first and cheaply, and most images are shown at low resolution. With "
           "equalised learning rates, pixelwise feature normalisation, minibatch standard deviation and the "
           "WGAN-GP loss, it reached 1024x1024 faces."),
    paper="Karras, Aila, Laine, Lehtinen 2018, Progressive Growing of GANs for Improved Quality, Stability, and "
          "Variation, https://arxiv.org/abs/1710.10196",
    # section A.1: WGAN-GP, Adam(0.001, 0, 0.99, 1e-8), batch 16 up to 128x128, EMA of G (0.999 per step of 16)
    train_defaults={"resolution": 64, "loss": "wasserstein", "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.0, 0.99),
                    "batch_size": 16, "ema_kimg": 10.0},
    resolutions=(1024,),
    # A CPU cannot train the paper's 23M-parameter networks on 800k-image phases. On a CPU, each of these keys
    # that the user does not set: widths 128, 128, 64, 32, 16 for 4..64px (the paper's: 512 up to 32px) and
    # 6k-image phases (1/133 of the paper's), chosen on Fashion-MNIST from measured img/s per stage to leave
    # most of a 10-minute 32px run at the final resolution (measured: growing takes about 4 minutes on 2 cores);
    # the gradient penalty every 4th D step (StyleGAN2's lazy regularisation: half of a 64px step was the
    # penalty's double backward) and learning rate 0.003, chosen on emoji (30 minutes, one core: FID 18.8 ->
    # 16.2 lazy -> 8.5 at lr 0.002 -> 6.2 at 0.003) and confirmed on Fashion-MNIST (20.8 -> 18.4 -> 12.3 -> 9.9;
    # docs/models/progan.md, docs/benchmarks.md).
    cpu_defaults={"arch": {"fmap_base": 512, "fmap_max": 128},
                  "recipe": {"stable_kimg": 6.0, "fade_kimg": 6.0, "gp_every": 4},
                  "train": {"lr_g": 3e-3, "lr_d": 3e-3}},
)
def build_progan(cfg: ProGANConfig, resolution: int, channels: int):
    return ProGANGenerator(cfg, resolution, channels), ProGANDiscriminator(cfg, resolution, channels)
