"""StyleGAN2: Karras, Laine, Aittala, Hellsten, Lehtinen and Aila 2020, "Analyzing and Improving the Image
Quality of StyleGAN", CVPR. https://arxiv.org/abs/1912.04958

Implemented as config F of the paper, as NVlabs' code builds it (stylegan2, TensorFlow; stylegan2-ada-pytorch, networks.py),
in pure PyTorch (models/style.py holds the shared pieces):
- Mapping: z (512) normalised, 8 dense layers (LeakyReLU 0.2, learning-rate multiplier 0.01) to w (512),
  broadcast to num_ws = 2 log2(R) - 2 styles; w_avg tracked for truncation.
- Synthesis, the skip generator (figure 7b): a learned constant 4x4 input; per resolution two 3x3 modulated
  convolutions (weight demodulation, section 2.2), the first of each block upsampling 2x (transposed conv, then
  the [1, 3, 3, 1] FIR filter); after each, per-pixel noise scaled by one learned strength, a bias and
  LeakyReLU times sqrt(2). Each resolution's toRGB (a modulated 1x1 conv without demodulation) adds to the
  upsampled (FIR) image of the one below.
- Discriminator, residual (figure 7c): fromRGB at the top resolution, then per halving two 3x3 convs (the
  second filtered and strided) plus a 1x1 skip (filtered and strided, no bias), summed times sqrt(1/2);
  minibatch standard deviation (group 4, one feature), a 3x3 conv, a dense layer and a linear output.
- Equalised learning rate everywhere; widths nf(R) = min(channel_base / R, channel_max) (config F: 32768, 512:
  512 channels up to 64x64, 32 at 1024x1024).
No progressive growing. G's output is linear while training and clipped in eval mode (sampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_model
from .growing import check_growth_resolution
from .layers import EqualizedLinear, MinibatchStdDev
from .style import (SQRT2, MappingNetwork, StyleGenerator, downsample2d, fir_filter, lrelu, modulated_conv2d,
                    upfirdn2d, upsample2d)


@dataclass
class StyleGAN2Config:
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 32768     # nf(R) = min(channel_base / R, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4          # minibatch-stddev group size (0 or 1: none)
    fused_modconv: str = "auto"   # the modulated conv as one grouped conv: "always", "never", or "auto" (NVlabs'
                                  # rule: when sampling on a GPU; measured 1.7x slower than the other form on a
                                  # CPU for sampling, 5x for training, so not there)


def _nf(cfg, resolution: int) -> int:
    return max(1, min(cfg.channel_base // resolution, cfg.channel_max))


def _check(cfg: StyleGAN2Config, resolution: int) -> None:
    check_growth_resolution(resolution)
    if min(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.channel_base, cfg.channel_max) < 1:
        raise ValueError("arch.z_dim, w_dim, mapping_layers, channel_base and channel_max must be >= 1")
    if not cfg.mapping_lr_mul > 0:
        raise ValueError(f"arch.mapping_lr_mul must be > 0, got {cfg.mapping_lr_mul}")
    if cfg.fused_modconv not in ("always", "never", "auto"):
        raise ValueError(f"arch.fused_modconv must be always, never or auto, got {cfg.fused_modconv!r}")


class ModulatedLayer(nn.Module):
    """A modulated 3x3 conv (upsampling 2x where asked), noise, bias, LeakyReLU x sqrt 2."""

    def __init__(self, w_dim: int, c_in: int, c_out: int, resolution: int, up: bool, fir: torch.Tensor,
                 fused: str):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, gain=1.0, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.weight_gain = 1 / math.sqrt(c_in * 9)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.up, self.resolution, self.fused = up, resolution, fused
        self.register_buffer("fir", fir, persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        fused = self.fused == "always" or (self.fused == "auto" and not self.training and x.is_cuda)
        x = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), True, self.up, self.fir, fused)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        return lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 conv without demodulation, plus a bias; linear."""

    def __init__(self, w_dim: int, c_in: int, channels: int, fused: str):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, c_in, gain=1.0, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.weight_gain = 1 / math.sqrt(c_in)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.fused = fused

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        fused = self.fused == "always" or (self.fused == "auto" and not self.training and x.is_cuda)
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, False, fused=fused)
        return x + self.bias.to(x.dtype)[None, :, None, None]


class StyleGAN2Generator(StyleGenerator):
    def __init__(self, cfg: StyleGAN2Config, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self.resolution, self.channels, self.z_dim, self.w_dim = resolution, channels, cfg.z_dim, cfg.w_dim
        self.log2 = int(math.log2(resolution))
        self.num_ws = 2 * self.log2 - 2
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
        fir = fir_filter([1, 3, 3, 1])
        self.register_buffer("fir", fir, persistent=False)
        c4 = _nf(cfg, 4)
        self.const = nn.Parameter(torch.randn(c4, 4, 4))
        self.layers = nn.ModuleList([ModulatedLayer(cfg.w_dim, c4, c4, 4, False, fir, cfg.fused_modconv)])
        self.to_rgb = nn.ModuleList([ToRGB(cfg.w_dim, c4, channels, cfg.fused_modconv)])
        for k in range(3, self.log2 + 1):
            r = 2 ** k
            c_in, c = _nf(cfg, r // 2), _nf(cfg, r)
            self.layers.append(ModulatedLayer(cfg.w_dim, c_in, c, r, True, fir, cfg.fused_modconv))
            self.layers.append(ModulatedLayer(cfg.w_dim, c, c, r, False, fir, cfg.fused_modconv))
            self.to_rgb.append(ToRGB(cfg.w_dim, c, channels, cfg.fused_modconv))

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, layer.resolution, layer.resolution) for layer in self.layers]

    def layer_resolutions(self) -> list[int]:
        # ws[i] drives conv layer i (and the toRGB of the block below it); the last one, the last toRGB
        return [layer.resolution for layer in self.layers] + [self.resolution]

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R]. Style indices as NVlabs': the 4x4 conv takes ws[0] and
        its toRGB ws[1]; block 2^k takes ws[2k-5], ws[2k-4] for its convs and ws[2k-3] for its toRGB."""
        n = ws.shape[0]
        noise = noise if noise is not None else [None] * len(self.layers)
        x = self.const[None].expand(n, -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise[0])
        img = self.to_rgb[0](x, ws[:, 1])
        for b in range(1, self.log2 - 1):
            i = 2 * b - 1  # first conv of the block
            x = self.layers[i](x, ws[:, i], noise[i])
            x = self.layers[i + 1](x, ws[:, i + 1], noise[i + 1])
            img = upsample2d(img, self.fir) + self.to_rgb[b](x, ws[:, i + 2]).to(img.dtype)
        return img


class DConv(nn.Module):
    """Discriminator conv: equalised lr; optional FIR filter then stride 2 (`down`); bias; LeakyReLU x sqrt 2 x
    `gain` (or linear times `gain`)."""

    def __init__(self, c_in: int, c_out: int, k: int, down: bool = False, act: bool = True, bias: bool = True,
                 gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.weight_gain = 1 / math.sqrt(c_in * k * k)
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.k, self.down, self.act, self.gain = k, down, act, gain
        self.register_buffer("fir", fir_filter([1, 3, 3, 1]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            if self.k == 1:  # NVlabs: filter and decimate, then the 1x1 conv
                x = F.conv2d(downsample2d(x, self.fir), w, self.bias)
            else:  # filter with padding so that a valid stride-2 conv halves the size
                p = (self.fir.shape[-1] - 2 + self.k - 1) // 2
                x = F.conv2d(upfirdn2d(x, self.fir, pad=(p, p)), w, self.bias, stride=2)
        else:
            x = F.conv2d(x, w, self.bias, padding=self.k // 2)
        return lrelu(x, SQRT2 * self.gain) if self.act else x * self.gain if self.gain != 1 else x


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config, resolution: int, channels: int):
        super().__init__()
        _check(cfg, resolution)
        self.resolution = resolution
        log2 = int(math.log2(resolution))
        self.from_rgb = DConv(channels, _nf(cfg, resolution), 1)
        self.blocks = nn.ModuleList()
        for k in range(log2, 2, -1):
            r = 2 ** k
            c, c_out = _nf(cfg, r), _nf(cfg, r // 2)
            self.blocks.append(nn.ModuleDict({
                "conv0": DConv(c, c, 3), "conv1": DConv(c, c_out, 3, down=True, gain=math.sqrt(0.5)),
                "skip": DConv(c, c_out, 1, down=True, act=False, bias=False, gain=math.sqrt(0.5))}))
        c4 = _nf(cfg, 4)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group) if cfg.mbstd_group > 1 else nn.Identity()
        self.conv = DConv(c4 + (1 if cfg.mbstd_group > 1 else 0), c4, 3)
        self.fc = EqualizedLinear(c4 * 16, c4, gain=1.0)
        self.out = EqualizedLinear(c4, 1, gain=1.0)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(img)
        for b in self.blocks:
            y = b["skip"](x)
            x = b["conv1"](b["conv0"](x))
            x = x + y
        x = self.conv(self.mbstd(x))
        x = lrelu(self.fc(x.flatten(1)))
        return self.out(x).squeeze(1)


@register_model(
    "stylegan2", config_cls=StyleGAN2Config, recipe="stylegan2",
    arxiv="1912.04958",
    added=("StyleGAN without its droplet artefacts: weight modulation and demodulation in place of AdaIN, a "
           "skip-connected generator and a residual discriminator in place of progressive growing, lazy R1 and "
           "path-length regularisation for a smoother map from w to images."),
    paper="Karras, Laine, Aittala, Hellsten, Lehtinen, Aila 2020, Analyzing and Improving the Image Quality of "
          "StyleGAN, https://arxiv.org/abs/1912.04958",
    # config F: Adam(0.002, 0, 0.99, 1e-8), batch 32, non-saturating logistic loss, EMA half-life 10k images
    train_defaults={"resolution": 64, "loss": "nonsaturating", "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.99),
                    "batch_size": 32, "ema_kimg": 10.0},
    resolutions=(1024,),
    # On a CPU, each key the user does not set: Progressive GAN's CPU widths (128, 128, 64, 32, 16 at 4..64px; the
    # paper's 512 up to 64px), 128-d z and w, and batch 16: 82 img/s at 32px on 2 cores (2048: 47). No style-mixing
    # and no path-length regularisation, as NVlabs' own small, short config (stylegan2-ada's `cifar`) has it:
    # chosen on emoji (64px, 10 minutes on one core: FID 23.3 -> 17.4) and confirmed on a held-out folder
    # (runs/emoji-variants: 7.56 -> 5.62); R1 stays the paper's gamma 10 (0.05 and 1 were worse on emoji).
    cpu_defaults={"arch": {"channel_base": 1024, "channel_max": 128, "z_dim": 128, "w_dim": 128},
                  "recipe": {"mixing": 0.0, "pl_weight": 0.0},
                  "train": {"batch_size": 16}},
)
def build_stylegan2(cfg: StyleGAN2Config, resolution: int, channels: int):
    return StyleGAN2Generator(cfg, resolution, channels), StyleGAN2Discriminator(cfg, resolution, channels)
