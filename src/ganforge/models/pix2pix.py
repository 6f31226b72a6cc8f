"""pix2pix: image-to-image translation with a conditional GAN.

Isola, Zhu, Zhou and Efros 2017, "Image-to-Image Translation with Conditional Adversarial Networks",
https://arxiv.org/abs/1611.07004 (the authors' Torch code, phillipi/pix2pix, and their PyTorch port,
junyanz/pytorch-CycleGAN-and-pix2pix, were read for the details the paper leaves out).

Implemented:
- U-Net generator (paper section 3.2.1 and appendix 6.1.1): an encoder of 4x4 stride-2 convolutions, each
  halving the image down to 1x1 (`arch.depth` 0; 8 levels at 256px, 5 at 32px), widths ngf x 1, 2, 4, 8, 8...,
  LeakyReLU 0.2, no normalisation in the first layer (the paper's exception) nor in the innermost one (a 1x1
  map: the authors' code); a decoder of 4x4 stride-2 transposed convolutions with ReLU, each output
  concatenated with the encoder's map of the same size (the skips); a last transposed convolution to the
  image's channels and tanh. Widths C64-C128-C256-C512-C512-C512-C512-C512 at 256px with `ngf` 64.
- Noise is dropout (the paper: no z, "noise in the form of dropout, applied on several layers of our generator
  at both training and test time"): 50% dropout in the first three decoder layers (`arch.dropout_layers`),
  on at test time too (`arch.test_dropout`, switchable; the translate command draws it from its seed).
- PatchGAN discriminator (section 3.2.2): C64-C128-C256-C512 of 4x4 convolutions (stride 2 but the last),
  then a 1-channel convolution: one real/fake logit per overlapping patch, averaged by the loss. With 3
  stride-2 layers the receptive field is 70x70 (the paper's default at 256px); `arch.receptive_field` picks
  16, 34, 70, 142 or 286 (1, 2, 3, 4, 5 such layers), and "auto" (0) scales 70/256 of the image to the
  nearest of them (16 at 32 and 64px, 34 at 128, 70 at 256).
- D is conditioned on the input: it scores the input image concatenated with the real or translated image
  (`arch.d_conditional`; off, it sees the output alone: the paper's "L1 + GAN" ablation).
- Normalisation `arch.norm`: "batch" (the paper), "instance" (the paper's batch-size-1 training with test-time
  batch statistics is exactly instance normalisation with a learned gain and bias, at any batch size) or
  "none". With batch norm, translation uses the running statistics.
- Weights from N(0, 0.02), norm gains from N(1, 0.02), biases 0 (appendix 6.2).
- The loss (recipes/paired.py): cGAN + lambda * L1 with lambda 100, D's objective halved; Adam(2e-4, 0.5, 0.999).

Differences from the paper, and why: the paper trains with batch size 1-10 on a GPU and normalises with the
test batch's statistics at test time; here a GPU run takes the paper's batch of 1, a CPU run batches of 32 and
half the widths (the CPU preset: ngf = ndf = 32) for throughput, and with `arch.norm=batch` translation uses
the running statistics (`arch.norm=instance` is the paper's batch-1 behaviour exactly, at any batch size). The
layout is the paper's, at the depth the image size gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_model

RECEPTIVE_FIELDS = {16: 1, 34: 2, 70: 3, 142: 4, 286: 5}  # PatchGAN receptive field -> stride-2 layers


@dataclass
class Pix2PixConfig:
    ngf: int = 64                # G's base width (the paper's 64)
    ndf: int = 64                # D's base width (the paper's 64)
    depth: int = 0               # U-Net levels; 0 = down to 1x1 (log2 of the resolution: the paper's 8 at 256px)
    norm: str = "batch"          # batch (the paper) | instance (= the paper's batch-1 training, any batch) | none
    dropout: float = 0.5         # the paper's noise: dropout rate in the decoder's first layers
    dropout_layers: int = 3      # how many decoder layers (innermost first) have dropout (the paper: 3)
    test_dropout: bool = True    # keep dropout on when translating (the paper); false: deterministic outputs
    receptive_field: int = 0     # PatchGAN patch: 16, 34, 70, 142 or 286 px; 0 = auto (70/256 of the image)
    d_conditional: bool = True   # D sees (input, output) pairs (the paper); false: the output alone


def auto_receptive_field(resolution: int) -> int:
    """The paper's 70x70 patch at 256px, scaled to the image: the nearest (in log scale) of the sizes the
    PatchGAN can have, and no larger than the image allows."""
    target = 70 * resolution / 256
    fits = [rf for rf, n in RECEPTIVE_FIELDS.items() if resolution // 2 ** n >= 3]
    return min(fits or [16], key=lambda rf: abs(math.log(rf / target)))


def patch_receptive_field(n_layers: int) -> int:
    """Receptive field of n stride-2 4x4 convolutions followed by two stride-1 4x4 convolutions."""
    r = 1
    for stride in [1, 1] + [2] * n_layers:  # walked from the output back to the input
        r = (r - 1) * stride + 4
    return r


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class TestTimeDropout(nn.Module):
    """Dropout that stays on in eval mode when asked: pix2pix's only source of randomness."""

    def __init__(self, p: float, at_test: bool):
        super().__init__()
        self.p, self.at_test = p, at_test

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training or self.at_test)

    def extra_repr(self) -> str:
        return f"p={self.p}, at_test={self.at_test}"


class UNetGenerator(nn.Module):
    """source image [N, C, R, R] -> translated image [N, C_out, R, R] in [-1, 1]."""

    translates = True   # a capability: it maps images to images (recipes.capabilities)
    z_dim = 0           # no latent: dropout is the noise

    def __init__(self, cfg: Pix2PixConfig, resolution: int, channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        depth = cfg.depth or int(math.log2(resolution))
        if depth < 2 or resolution % 2 ** depth:
            raise ValueError(f"arch.depth {depth}: a U-Net of {resolution}px needs 2 <= depth <= "
                             f"{int(math.log2(resolution))} with {resolution} divisible by 2**depth")
        self.depth, self.resolution = depth, resolution
        widths = [cfg.ngf * min(8, 2 ** i) for i in range(depth)]   # encoder outputs, outermost first
        self.widths = widths
        bias = cfg.norm != "batch"  # a batch norm's shift makes a conv bias redundant (the authors' code)
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            plain = i == 0 or i == depth - 1   # no norm in the first layer (the paper) nor the 1x1 innermost
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(channels if i == 0 else widths[i - 1], w, 4, 2, 1, bias=plain or bias))
            if not plain:
                layers.append(_norm(cfg.norm, w))
            self.down.append(nn.Sequential(*layers))
        n_drop = min(cfg.dropout_layers, depth - 1)
        self.up = nn.ModuleList()
        for j in range(depth - 1):  # innermost first; layer j outputs the size of encoder level depth-2-j
            i = depth - 1 - j
            c_in = widths[i] if j == 0 else 2 * widths[i]
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, widths[i - 1], 4, 2, 1, bias=bias), _norm(cfg.norm, widths[i - 1])]
            if j < n_drop and cfg.dropout > 0:
                layers.append(TestTimeDropout(cfg.dropout, cfg.test_dropout))
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1), nn.Tanh())
        init_weights(self)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        skips = []
        x = source
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = skips.pop()  # the innermost map feeds the decoder, not a skip
        for layer in self.up:
            x = torch.cat([layer(x), skips.pop()], 1)
        return self.out(x)


class PatchDiscriminator(nn.Module):
    """(source, image) -> logits [N, 1, h, w], one per overlapping patch of `receptive_field` pixels."""

    def __init__(self, cfg: Pix2PixConfig, resolution: int, channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        rf = cfg.receptive_field or auto_receptive_field(resolution)
        if rf not in RECEPTIVE_FIELDS:
            raise ValueError(f"arch.receptive_field must be 0 (auto) or one of "
                             f"{', '.join(map(str, RECEPTIVE_FIELDS))}, got {rf}")
        n = RECEPTIVE_FIELDS[rf]
        if resolution // 2 ** n < 3:
            raise ValueError(f"arch.receptive_field {rf} needs images of at least {3 * 2 ** n}px; these are "
                             f"{resolution}px (choose a smaller one or 0 for auto)")
        self.conditional = cfg.d_conditional
        self.receptive_field, self.n_layers = rf, n
        c_in = out_channels + (channels if cfg.d_conditional else 0)
        bias = cfg.norm != "batch"
        layers = [nn.Conv2d(c_in, cfg.ndf, 4, 2, 1), nn.LeakyReLU(0.2)]   # no norm in the first layer
        c = cfg.ndf
        for i in range(1, n + 1):  # n - 1 more stride-2 layers, then one at stride 1
            c_next = cfg.ndf * min(8, 2 ** i)
            layers += [nn.Conv2d(c, c_next, 4, 2 if i < n else 1, 1, bias=bias), _norm(cfg.norm, c_next),
                       nn.LeakyReLU(0.2)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def map_size(self, resolution: int) -> int:
        return resolution // 2 ** self.n_layers - 2

    def forward(self, image: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            if source is None:
                raise ValueError("this PatchGAN is conditional: it scores (source, image) pairs")
            image = torch.cat([source, image], 1)
        return self.net(image)


def init_weights(module: nn.Module) -> None:
    """Appendix 6.2: Gaussian weights, mean 0 and std 0.02; norm gains around 1; biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@register_model(
    "pix2pix",
    config_cls=Pix2PixConfig,
    arxiv="1611.07004",
    added=("A conditional GAN that translates one image into another: a U-Net generator, and a PatchGAN "
           "discriminator that judges (input, output) pairs patch by patch, next to an L1 term toward the "
           "ground truth."),
    paper="Isola et al. 2017, Image-to-Image Translation with Conditional Adversarial Networks, "
          "https://arxiv.org/abs/1611.07004",
    recipe="paired",
    train_defaults={"resolution": 32, "batch_size": 1, "loss": "nonsaturating", "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999),
                    "ema": False},
    resolutions=(256,),
    # the paper trains with batches of 1 (4 for edges2shoes); on a CPU, batches of 32 keep the cores busy, and
    # half the widths (4.2M parameters in G at 32px instead of 16.7M) train 3.2x more images a minute
    cpu_defaults={"train": {"batch_size": 32}, "arch": {"ngf": 32, "ndf": 32}},
)
def build(cfg: Pix2PixConfig, resolution: int, channels: int) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) of pix2pix for `channels` x `resolution` x `resolution` image pairs."""
    if cfg.ngf < 1 or cfg.ndf < 1 or not 0 <= cfg.dropout < 1 or cfg.dropout_layers < 0:
        raise ValueError(f"arch.ngf and arch.ndf must be >= 1, arch.dropout in [0, 1), arch.dropout_layers >= 0; "
                         f"got {cfg.ngf}, {cfg.ndf}, {cfg.dropout}, {cfg.dropout_layers}")
    if cfg.norm not in ("batch", "instance", "none"):
        raise ValueError(f"arch.norm must be batch, instance or none, got {cfg.norm!r}")
    return UNetGenerator(cfg, resolution, channels), PatchDiscriminator(cfg, resolution, channels)
