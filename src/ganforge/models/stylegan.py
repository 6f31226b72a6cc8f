"""StyleGAN: Karras, Laine and Aila 2019, "A Style-Based Generator Architecture for Generative Adversarial
Networks", CVPR. https://arxiv.org/abs/1812.04948

Implemented as the paper (section 2, appendix C) and NVlabs' code (NVlabs/stylegan, networks_stylegan.py,
TensorFlow 1) build it, in pure PyTorch:
- Mapping: z (512) pixel-normalised (the mapping network's normalisation), 8 dense layers (LeakyReLU 0.2, learning-rate multiplier 0.01) to w (512),
  broadcast to 2 styles per resolution (18 at 1024x1024); w_avg tracked for the truncation trick.
- Synthesis: a learned constant 4x4x512 input (initialised to ones), then per resolution two 3x3 convs (the
  first after 2x nearest upsampling and followed by a [1, 2, 1] blur); after the constant and after every conv,
  the layer epilogue: per-pixel noise scaled by learned per-channel factors, a bias, LeakyReLU, instance
  normalisation and AdaIN's style modulation x * (1 + y_s) + y_b, with (y_s, y_b) an affine map of that
  layer's w. toRGB per resolution: a linear 1x1 conv.
- Discriminator: Progressive GAN's, with a [1, 2, 1] blur before each downsampling conv (conv, 2x2 average
  pooling, bias, LeakyReLU); minibatch standard deviation (group 4, one feature); widths as Progressive GAN's.
- Progressive growing exactly as Progressive GAN (models/growing.py; recipes/growth.py): G's output lerps the
  upsampled previous toRGB into the new block's; D mirrors it.
- Equalised learning rate everywhere. G's output is linear in training and clipped in eval mode (sampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import register_model
from .growing import Growing, check_growth_resolution
from .layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, downscale2d, upscale2d
from .progan import nf as progan_nf
from .style import MappingNetwork, StyleGenerator, blur2d, fir_filter


@dataclass
class StyleGANConfig:
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    fmap_base: int = 8192         # widths as Progressive GAN: nf(R) = min(2 * fmap_base / R, fmap_max)
    fmap_max: int = 512
    fmap_min: int = 1
    mbstd_group: int = 4          # minibatch-stddev group size (0 or 1: none)
    use_noise: bool = True        # per-pixel noise inputs (NVlabs' G_synthesis use_noise)


def _check(cfg: StyleGANConfig, resolution: int) -> None:
    check_growth_resolution(resolution)
    if min(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.fmap_base, cfg.fmap_max, cfg.fmap_min) < 1:
        raise ValueError("arch.z_dim, w_dim, mapping_layers, fmap_base, fmap_max and fmap_min must be >= 1")
    if not cfg.mapping_lr_mul > 0:
        raise ValueError(f"arch.mapping_lr_mul must be > 0, got {cfg.mapping_lr_mul}")


class Epilogue(nn.Module):
    """Noise (per-channel scales, zero at start), bias, LeakyReLU, instance norm, AdaIN style modulation."""

    def __init__(self, channels: int, w_dim: int, use_noise: bool = True):
        super().__init__()
        self.noise_weight = nn.Parameter(torch.zeros(channels)) if use_noise else None
        self.bias = nn.Parameter(torch.zeros(channels))
        self.style = EqualizedLinear(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is not None and self.noise_weight is not None:
            x = x + noise.to(x.dtype) * self.noise_weight.to(x.dtype)[None, :, None, None]
        x = nn.functional.leaky_relu(x + self.bias.to(x.dtype)[None, :, None, None], 0.2)
        # Instance norm and the style in fp32 whatever the run's precision: the mean and variance over H x W
        # are long reductions, and bf16 (8-bit mantissa) would round the centred values before the division
        # scales them up to unit variance.
        dtype = x.dtype
        x = x.float()
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + 1e-8)
        s = self.style(w).float()
        scale, shift = s.chunk(2, dim=1)
        return (x * (scale[:, :, None, None] + 1) + shift[:, :, None, None]).to(dtype)


def _conv(c_in: int, c_out: int) -> EqualizedConv2d:
    """An equalised 3x3 conv without its bias: the epilogue adds the bias after the noise, as NVlabs'."""
    return EqualizedConv2d(c_in, c_out, 3, bias=False)


class StyleGANGenerator(StyleGenerator, Growing):
    def __init__(self, cfg: StyleGANConfig, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self._init_growth(resolution)
        self.channels, self.z_dim, self.w_dim = channels, cfg.z_dim, cfg.w_dim
        self.num_ws = 2 * len(self.resolutions)
        self.use_noise = bool(cfg.use_noise)
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
        self.register_buffer("blur", fir_filter([1, 2, 1]), persistent=False)
        c4 = progan_nf(cfg, 4)
        self.const = nn.Parameter(torch.ones(c4, 4, 4))
        self.convs = nn.ModuleDict({"4": _conv(c4, c4)})
        pair = lambda c: nn.ModuleList([Epilogue(c, cfg.w_dim, cfg.use_noise) for _ in range(2)])  # noqa: E731
        self.epilogues = nn.ModuleDict({"4": pair(c4)})
        self.up_convs = nn.ModuleDict()
        self.to_rgb = nn.ModuleDict({"4": EqualizedConv2d(c4, channels, 1, gain=1.0)})
        for r in self.resolutions[1:]:
            c_in, c = progan_nf(cfg, r // 2), progan_nf(cfg, r)
            self.up_convs[str(r)] = _conv(c_in, c)
            self.convs[str(r)] = _conv(c, c)
            self.epilogues[str(r)] = pair(c)
            self.to_rgb[str(r)] = EqualizedConv2d(c, channels, 1, gain=1.0)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """One [1, R, R] per noise input; none when the model has no noise inputs (arch.use_noise=false)."""
        return [(1, r, r) for r in self.resolutions for _ in range(2)] if self.use_noise else []

    def layer_resolutions(self) -> list[int]:
        return [r for r in self.resolutions for _ in range(2)]

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images at the current stage's resolution; resolution 2^k's layers take
        ws[2k-4] and ws[2k-3]."""
        n = ws.shape[0]
        noise = noise if noise else [None] * self.num_ws   # None or [] (no noise inputs): no noise
        ep = self.epilogues["4"]
        x = ep[0](self.const[None].expand(n, -1, -1, -1).to(ws.dtype), ws[:, 0], noise[0])
        x = ep[1](self.convs["4"](x), ws[:, 1], noise[1])
        prev = x
        for i, r in enumerate(self.resolutions[1:], start=1):
            if r > self.stage_resolution:
                break
            prev = x
            ep = self.epilogues[str(r)]
            x = ep[0](blur2d(self.up_convs[str(r)](upscale2d(x)), self.blur), ws[:, 2 * i], noise[2 * i])
            x = ep[1](self.convs[str(r)](x), ws[:, 2 * i + 1], noise[2 * i + 1])
        img = self.to_rgb[str(self.stage_resolution)](x)
        if self.fading:
            old = upscale2d(self.to_rgb[str(self.stage_resolution // 2)](prev))
            img = self.fade(old, img)
        return img


class StyleGANDiscriminator(Growing):
    def __init__(self, cfg: StyleGANConfig, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self._init_growth(resolution)
        self.register_buffer("blur", fir_filter([1, 2, 1]), persistent=False)
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for r in self.resolutions:
            self.from_rgb[str(r)] = nn.Sequential(EqualizedConv2d(channels, progan_nf(cfg, r), 1), nn.LeakyReLU(0.2))
            if r > 4:
                self.blocks[str(r)] = nn.ModuleList([EqualizedConv2d(progan_nf(cfg, r), progan_nf(cfg, r), 3),
                                                     EqualizedConv2d(progan_nf(cfg, r), progan_nf(cfg, r // 2), 3,
                                                                     bias=False)])
        self.down_bias = nn.ParameterDict({str(r): nn.Parameter(torch.zeros(progan_nf(cfg, r // 2)))
                                           for r in self.resolutions[1:]})
        c4 = progan_nf(cfg, 4)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group) if cfg.mbstd_group > 1 else nn.Identity()
        extra = 1 if cfg.mbstd_group > 1 else 0
        self.final = nn.Sequential(EqualizedConv2d(c4 + extra, c4, 3), nn.LeakyReLU(0.2), nn.Flatten(),
                                   EqualizedLinear(c4 * 16, progan_nf(cfg, 2)), nn.LeakyReLU(0.2),
                                   EqualizedLinear(progan_nf(cfg, 2), 1, gain=1.0))

    def _block(self, r: int, x: torch.Tensor) -> torch.Tensor:
        conv0, conv1 = self.blocks[str(r)]
        x = nn.functional.leaky_relu(conv0(x), 0.2)
        x = downscale2d(conv1(blur2d(x, self.blur)))   # conv, then 2x2 average pooling, then bias and activation
        return nn.functional.leaky_relu(x + self.down_bias[str(r)].to(x.dtype)[None, :, None, None], 0.2)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.stage_resolution
        x = self.from_rgb[str(r)](img)
        if r > 4:
            x = self._block(r, x)
            if self.fading:
                old = self.from_rgb[str(r // 2)](downscale2d(img))
                x = self.fade(old, x)
            while r > 8:
                r //= 2
                x = self._block(r, x)
        return self.final(self.mbstd(x)).squeeze(1)


@register_model(
    "stylegan", config_cls=StyleGANConfig, recipe="stylegan",
    arxiv="1812.04948",
    added=("The style-based generator: a mapping network turns z into an intermediate latent w, whose learned "
           "affine maps set the AdaIN styles of every layer on a learned constant input, with per-pixel noise "
           "for stochastic detail. Coarse and fine attributes come apart (style mixing), and truncation in W "
           "trades variety for typical images. The model behind \"This Person Does Not Exist\"."),
    paper="Karras, Laine, Aila 2019, A Style-Based Generator Architecture for Generative Adversarial Networks, "
          "https://arxiv.org/abs/1812.04948",
    # NVlabs' FFHQ config: Adam(0.001, 0, 0.99, 1e-8), non-saturating logistic loss with R1 (gamma 10), EMA of G
    # (half-life 10k images), batch 32 from 64x64 up (512 to 64 below it: recipe.batch_sizes), learning rates
    # rising above 128px
    train_defaults={"resolution": 64, "loss": "nonsaturating", "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.0, 0.99),
                    "batch_size": 32, "ema_kimg": 10.0},
    resolutions=(1024,),
    # On a CPU, each key the user does not set: Progressive GAN's CPU widths and 6k-image phases, 128-d z and w;
    # as ProGAN's CPU preset, the penalty lazy (R1 every 16th D step, StyleGAN2's section 3.1) and learning rate
    # 0.003, chosen on emoji (30 minutes, one core: FID 23.4 -> 19.6 lazy -> 15.7 at lr 0.002 -> 15.0 at 0.003)
    # and confirmed on Fashion-MNIST (28.4 -> 23.6 -> 16.4 -> 15.1); and, as StyleGAN2's CPU preset, no style
    # mixing (emoji: 15.0 -> 9.0; Fashion-MNIST: docs/models/stylegan.md). The noise inputs stay. Without mixing,
    # lr 0.005 (emoji: 9.0 -> 8.4 at 0.004 -> 7.8; held out on Fashion-MNIST: 12.3 -> 10.1).
    cpu_defaults={"arch": {"fmap_base": 512, "fmap_max": 128, "z_dim": 128, "w_dim": 128},
                  "recipe": {"stable_kimg": 6.0, "fade_kimg": 6.0, "batch_sizes": "", "lr_dict": "",
                             "r1_every": 16, "mixing": 0.0},
                  "train": {"batch_size": 16, "lr_g": 5e-3, "lr_d": 5e-3}},
)
def build_stylegan(cfg: StyleGANConfig, resolution: int, channels: int):
    return StyleGANGenerator(cfg, resolution, channels), StyleGANDiscriminator(cfg, resolution, channels)
