"""SAGAN: Zhang, Goodfellow, Metaxas and Odena 2019, "Self-Attention Generative Adversarial Networks", ICML.
https://arxiv.org/abs/1805.08318

Implemented as the paper describes, with the details it leaves out read from the authors' TensorFlow code
(github.com/brain-research/self-attention-gan) and the SN-GAN / projection-discriminator code it builds on
(Miyato et al. 2018, github.com/pfnet-research/sngan_projection):
- Self-attention (section 3): from features x [N, C, H, W], 1x1 convolutions give queries g(x) and keys f(x)
  of C/8 channels and values h(x) of C/8 channels (`attn_reduction`); every position j attends to all
  positions i with beta_ji = softmax_i(f(x_i)^T g(x_j)) (no 1/sqrt(d) scaling), o_j = v(sum_i beta_ji h(x_i))
  with a last 1x1 convolution v back to C channels, and the block returns x + gamma * o, gamma a learned
  scalar that starts at 0 (so the network first relies on local cues, then learns to use distant ones).
  The attention itself is PyTorch's fused `scaled_dot_product_attention` (scale 1: the same arithmetic as
  softmax(QK^T)V, in one kernel that never stores the HW x HW matrix); the explicit form is used only when
  the attention maps are asked for (`keep_attention`, for `ganforge attention`).
  `attn_pool=true` is the authors' released code instead of the paper: values of C/2 channels, and keys and
  values max-pooled 2x2 (each query sees HW/4 positions, 4x cheaper).
- Spectral normalisation (Miyato et al. 2018) on every layer of G and D, the paper's section 4 (G as well as
  D): PyTorch's own parametrisation (`torch.nn.utils.parametrizations.spectral_norm`), one power iteration
  per forward pass in training; its u and v vectors are buffers, so checkpoints and the EMA copy keep them.
- ResNet blocks (the SN-GAN / projection-discriminator architecture the paper uses): G's block is BN, ReLU,
  nearest 2x upsampling, 3x3 conv, BN, ReLU, 3x3 conv, with a 1x1 conv on the upsampled input as shortcut;
  D's is ReLU, 3x3 conv, ReLU, 3x3 conv, 2x2 average pooling, with a 1x1 conv then pooling as shortcut (D's
  first block takes the image without the leading ReLU, and pools before its shortcut conv). G starts with
  a linear layer from z (128) to a 4x4 map and ends with BN, ReLU, a 3x3 conv to the image and tanh; D ends
  with ReLU, a sum over positions and a linear layer to one logit.
- Widths: G's map at resolution r has ch * min(16, R / r) channels, D's block output at r has
  ch * min(16, R / (2r)) and D's last block (at 4x4, not downsampling) 16 ch (capped likewise). At 128px with
  ch = 64 this is the paper's ImageNet network: G 1024 (4x4) -> 1024, 512, 256, 128, 64 (128x128); D 64, 128,
  256, 512, 1024, 1024.
- Attention at `attn_resolutions` in G (after the block that makes that resolution) and in D (after the block
  that outputs it); "auto" puts it at R/2 (at 128px: the 64x64 maps, where the paper's table 1 finds it best).
- Class-conditional (`num_classes` > 0): G's batch norms are conditional (per-class gain and bias, gains
  starting at 1 and biases at 0, the authors' code), D is a projection discriminator (Miyato and Koyama 2018):
  logit = linear(h) + <embed(c), h>, h D's summed features, the embedding spectrally normalised as in their
  code. Unconditional G uses ordinary batch norm. `num_classes = -2` (the default) means: conditional when the
  data has classes, unconditional when it has none.
- Training (registry defaults): hinge loss, TTUR (D lr 4e-4, G lr 1e-4, Adam betas 0 and 0.9), one D step
  per G step, an EMA generator for samples (the authors' code samples G itself; `train.ema=false`).
Differences from the paper and the authors' code: batch 64 (paper 256: `--batch-size 256`); weights start from
PyTorch's initialisation (uniform, bound 1/sqrt(fan_in); the embedding N(0, 1)), biases at 0; the authors' code
draws Xavier-uniform weights. Under spectral normalisation a weight's scale is divided out, so the two differ in
the scale of the stored weights only, that is in Adam's step relative to them; the figures in docs/benchmarks.md
were measured with this initialisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..registry import register_model
from .layers import check_labels

AUTO_CLASSES = -2  # arch.num_classes: conditional when the data has classes, unconditional when it has none


@dataclass
class SAGANConfig:
    z_dim: int = 128             # the paper's (and SN-GAN's) latent size
    ch: int = 64                 # base width: the paper's ImageNet network at 128px (see the module docstring)
    attn_resolutions: str = "auto"  # where G and D attend, e.g. "32" or "16,32"; "auto" = R/2; "" = nowhere
    attn_reduction: int = 8      # queries, keys (and values) have C / attn_reduction channels: the paper's 8
    attn_pool: bool = False      # the authors' code: values C/2, keys and values max-pooled 2x2 (4x cheaper)
    num_classes: int = AUTO_CLASSES  # -2: as the data (classes -> conditional); 0: unconditional; -1: the data's
                                 # classes, an error when it has none; K > 0: K classes
    bn_eps: float = 1e-5


def sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation, PyTorch's parametrisation (one power iteration per training forward pass)."""
    return spectral_norm(module, n_power_iterations=1, eps=1e-12)


def _zero_biases(module: nn.Module) -> None:
    """Biases start at 0; weights keep PyTorch's initialisation (see the module docstring)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


def conv(c_in: int, c_out: int, k: int) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, k, padding=k // 2))


# ------------------------------------------------------------------------------------------ self-attention

class SelfAttention(nn.Module):
    """x + gamma * v(softmax over positions of f(x)^T g(x) applied to h(x)): SAGAN's section 3."""

    def __init__(self, channels: int, reduction: int = 8, pool: bool = False):
        super().__init__()
        self.pool = pool
        d = max(1, channels // reduction)  # (tiny test networks: at least one channel)
        dv = max(1, channels // 2) if pool else d
        self.query = sn(nn.Conv2d(channels, d, 1, bias=False))   # g in the paper
        self.key = sn(nn.Conv2d(channels, d, 1, bias=False))     # f
        self.value = sn(nn.Conv2d(channels, dv, 1, bias=False))  # h
        self.out = sn(nn.Conv2d(dv, channels, 1, bias=False))    # v
        self.gamma = nn.Parameter(torch.zeros(()))
        self.keep_attention = False   # store the maps [N, HW, HW'] of the next forward (ganforge attention)
        self.attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # contiguous [N, L, d]: the fused kernel takes its fast (flash) path only with unit stride in the last
        # dimension; from NCHW maps it would fall back to the unfused arithmetic (measured: no faster than bmm)
        q = self.query(x).flatten(2).transpose(1, 2).contiguous()       # [N, HW, d]
        kx, vx = self.key(x), self.value(x)
        if self.pool:
            kx, vx = F.max_pool2d(kx, 2), F.max_pool2d(vx, 2)
        k = kx.flatten(2).transpose(1, 2).contiguous()                  # [N, HW', d]
        v = vx.flatten(2).transpose(1, 2).contiguous()                  # [N, HW', dv]
        if self.keep_attention:
            beta = torch.softmax(q.float() @ k.float().transpose(1, 2), dim=-1)  # [N, HW, HW'], rows sum to 1
            self.attention = beta.detach()
            o = (beta.to(v.dtype) @ v)
        else:
            o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]
        o = o.transpose(1, 2).reshape(n, -1, h, w)
        return x + self.gamma * self.out(o)


# ------------------------------------------------------------------------------------------ G

class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine; the gain and bias are the label's (unconditional: ordinary BN)."""

    def __init__(self, channels: int, num_classes: int, eps: float):
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(channels, eps=eps, affine=num_classes == 0)
        if num_classes:
            self.gain = nn.Embedding(num_classes, channels)
            self.bias = nn.Embedding(num_classes, channels)
            self.gain._cbn = self.bias._cbn = True
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)
        if self.num_classes:
            h = h * self.gain(c)[:, :, None, None] + self.bias(c)[:, :, None, None]
        return h


class GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_classes: int, eps: float):
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, num_classes, eps)
        self.conv1 = conv(c_in, c_out, 3)
        self.bn2 = ConditionalBatchNorm(c_out, num_classes, eps)
        self.conv2 = conv(c_out, c_out, 3)
        self.skip = conv(c_in, c_out, 1)

    def forward(self, x, c):
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


def _levels(resolution: int) -> int:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"SAGAN needs a power-of-two resolution >= 8, got {resolution}")
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution in this many doublings


def attention_resolutions(cfg: SAGANConfig, resolution: int) -> set[int]:
    spec = cfg.attn_resolutions.strip()
    if spec == "auto":
        return {resolution // 2}
    out = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if not part.isdigit() or int(part) not in {2 ** k for k in range(2, _levels(resolution) + 3)}:
            raise ValueError(f"arch.attn_resolutions must list powers of two from 4 to {resolution}, got {spec!r}")
        out.add(int(part))
    return out


class Generator(nn.Module):
    def __init__(self, cfg: SAGANConfig, resolution: int, channels: int):
        super().__init__()
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        width = lambda r: cfg.ch * min(16, resolution // r)  # noqa: E731
        self.start = width(4)
        self.linear = sn(nn.Linear(cfg.z_dim, 4 * 4 * self.start))
        attn = attention_resolutions(cfg, resolution)
        self.blocks, self.attention = nn.ModuleList(), nn.ModuleDict()
        r = 4
        for _ in range(_levels(resolution)):
            self.blocks.append(GBlock(width(r), width(2 * r), cfg.num_classes, cfg.bn_eps))
            r *= 2
            if r in attn:
                self.attention[str(r)] = SelfAttention(width(r), cfg.attn_reduction, cfg.attn_pool)
        self.bn = nn.BatchNorm2d(width(resolution), eps=cfg.bn_eps)
        self.to_rgb = conv(width(resolution), channels, 3)
        _zero_biases(self)

    def forward(self, z, c=None):  # z: [N, z_dim], c: [N] int64 or None -> [N, C, H, W] in [-1, 1]
        c = check_labels(c, self.num_classes, z.shape[0])
        h = self.linear(z).view(z.shape[0], self.start, 4, 4)
        r = 4
        for block in self.blocks:
            h = block(h, c)
            r *= 2
            if str(r) in self.attention:
                h = self.attention[str(r)](h)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h))))


# ------------------------------------------------------------------------------------------ D

class DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, down: bool, first: bool):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = conv(c_in, c_out, 3)
        self.conv2 = conv(c_out, c_out, 3)
        self.skip = conv(c_in, c_out, 1) if (c_in != c_out or down) else None

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.skip is not None:
            if self.first:  # the image: pool, then 1x1 conv (SN-GAN's optimised first block)
                s = self.skip(F.avg_pool2d(s, 2) if self.down else s)
            else:
                s = self.skip(s)
                s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class Discriminator(nn.Module):
    def __init__(self, cfg: SAGANConfig, resolution: int, channels: int):
        super().__init__()
        self.num_classes = cfg.num_classes
        width = lambda r: cfg.ch * min(16, max(1, resolution // (2 * r)))  # noqa: E731  (block output at r)
        attn = attention_resolutions(cfg, resolution)
        self.blocks, self.attention = nn.ModuleList(), nn.ModuleDict()
        c_in, r = channels, resolution
        for i in range(_levels(resolution)):
            r //= 2
            self.blocks.append(DBlock(c_in, width(r), down=True, first=i == 0))
            c_in = width(r)
            if r in attn:
                self.attention[str(r)] = SelfAttention(c_in, cfg.attn_reduction, cfg.attn_pool)
        self.blocks.append(DBlock(c_in, c_in, down=False, first=False))  # the paper's last block, at 4x4
        self.linear = sn(nn.Linear(c_in, 1))
        if cfg.num_classes:
            self.embed = sn(nn.Embedding(cfg.num_classes, c_in))  # the projection's class vectors
        _zero_biases(self)

    def forward(self, x, c=None):  # x: [N, C, H, W], c: [N] int64 or None -> logits [N]
        c = check_labels(c, self.num_classes, x.shape[0])
        h = self.pooled(x)
        out = self.linear(h).flatten()
        if c is not None:  # projection (Miyato and Koyama 2018): + <embed(c), h>
            out = out + (self.embed(c) * h).sum(dim=1)
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """h: ReLU, then the sum over positions of the last block's features [N, features]."""
        h = x
        for block in self.blocks:
            h = block(h)
            if block.down and str(h.shape[-1]) in self.attention:
                h = self.attention[str(h.shape[-1])](h)
        return F.relu(h).sum(dim=(2, 3))


@register_model(
    "sagan",
    config_cls=SAGANConfig,
    arxiv="1805.08318",
    added=("Self-attention in G and D, so each position can draw on distant ones (global structure, not only "
           "local texture); spectral normalisation in both networks, the hinge loss, and separate learning "
           "rates for G and D (TTUR). Class-conditional through conditional batch normalisation in G and a "
           "projection discriminator, whenever the data has classes."),
    paper="Zhang et al. 2019, Self-Attention Generative Adversarial Networks, https://arxiv.org/abs/1805.08318",
    train_defaults={"resolution": 32, "loss": "hinge", "lr_g": 1e-4, "lr_d": 4e-4, "betas": (0.0, 0.9),
                    "ema": True},
    resolutions=(128,),
    # A CPU run: half the paper's width (at 32px G 256, 128, 64, 32 channels; 1.17M parameters)
    cpu_defaults={"arch": {"ch": 32}},
)
def build(cfg: SAGANConfig, resolution: int, channels: int) -> tuple[nn.Module, nn.Module]:
    """Build (G, D) of SAGAN for images of `channels` x `resolution` x `resolution`."""
    if cfg.z_dim < 1 or cfg.ch < 1 or cfg.attn_reduction < 1 or cfg.bn_eps <= 0:
        raise ValueError(f"arch.z_dim, arch.ch and arch.attn_reduction must be >= 1 and arch.bn_eps > 0, got "
                         f"{cfg.z_dim}, {cfg.ch}, {cfg.attn_reduction}, {cfg.bn_eps}")
    if cfg.num_classes < 0:  # -1 / -2 (from the data) must be resolved before building
        raise ValueError(f"arch.num_classes must be >= 0 (0 = unconditional) when the networks are built, got "
                         f"{cfg.num_classes}")
    return Generator(cfg, resolution, channels), Discriminator(cfg, resolution, channels)
