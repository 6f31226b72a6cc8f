"""What the style-based generators share (StyleGAN, Karras et al. 2019; StyleGAN2, Karras et al. 2020), in pure
PyTorch: no compiled extensions, the same code on a CPU and a GPU.

- `MappingNetwork`: z -> w, an MLP of `layers` equalised dense layers at a learning-rate multiplier (0.01 in both
  papers), z normalised to unit second moment first; it tracks the running average of w (`w_avg`, a buffer:
  checkpointed, copied to the EMA generator) for the truncation trick, w' = w_avg + psi (w - w_avg).
- FIR resampling (`upfirdn2d`, `upsample2d`, `downsample2d`, `blur2d`): zero-insertion upsampling, a separable
  low-pass filter and decimation, as NVlabs' upfirdn2d op; StyleGAN2 uses the [1, 3, 3, 1] filter, v1 blurs
  with [1, 2, 1].
- `modulated_conv2d`: StyleGAN2's weight modulation and demodulation, with its two equivalent forms: `fused`,
  one grouped convolution for the whole batch with per-sample weights; or the activations scaled by the style
  before one ordinary convolution and by the demodulation coefficients after it (NVlabs' stylegan2-ada uses
  the first to sample and the second to train, which is faster there for the backward pass).
- `StyleGenerator`: the interface both generators give the tools (truncation, style mixing, stochastic
  variation, projection): `mapping(z)`, `synthesis(ws, noise)`, `noise_shapes()`, `num_ws`, `has_mapping`.

The regularisers and the loss are the recipe's (recipes/style.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import EqualizedLinear

SQRT2 = math.sqrt(2.0)


def lrelu(x: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
    """LeakyReLU(0.2) times `gain` (sqrt 2 by default: NVlabs' bias_act keeps unit variance this way)."""
    return F.leaky_relu(x, 0.2) * gain


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


# ------------------------------------------------------------------------------------------ FIR resampling

def fir_filter(taps) -> torch.Tensor:
    """The separable 2-D filter of 1-D `taps` (e.g. [1, 3, 3, 1]), normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion (`up`), pad (`pad` = before, after, both axes), convolve with the 2-D filter
    `f` (a true convolution: flipped), keep every `down`-th pixel. [N, C, H, W] -> [N, C, H', W']."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    if any(pad):
        x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = (f * gain).flip([0, 1])[None, None].expand(c, 1, *f.shape)
    if down > 1 and x.device.type == "cpu" and (x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")):
        # A strided depthwise convolution in bf16 takes a slow path on the CPU (12-16 ms forward and backward at
        # every size, 2-12x the fp32 one; the 64px StyleGAN2 step is 1.25x faster without it, measured by
        # benchmarks/fir_speed.py). The filter is cheap: run it in fp32, hand back the dtype bf16 would have.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), k.float(), stride=down, groups=c).to(dtype)
    return F.conv2d(x, k.to(x.dtype), stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling with filter `f` (gain 4 keeps the mean): [N, C, H, W] -> [N, C, 2H, 2W]."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, up=2, pad=((fw + 1) // 2, (fw - 2) // 2), gain=4.0)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Filter with `f`, then keep every other pixel: [N, C, H, W] -> [N, C, H/2, W/2]."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, down=2, pad=((fw - 1) // 2, (fw - 2) // 2))


def blur2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Low-pass filtering at the same size (StyleGAN v1's blur after upsampling and before downsampling)."""
    fw = f.shape[-1]
    return upfirdn2d(x, f, pad=((fw - 1) // 2, fw // 2))


# ------------------------------------------------------------------------------------------ modulated conv

def modulate_weights(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True) -> torch.Tensor:
    """Each sample's weights [N, O, I, k, k]: w'_oik = s_i w_oik, divided by sqrt(sum_ik w'_oik^2 + 1e-8) (unit
    norm per output channel) when `demodulate`."""
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, fir: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
    """StyleGAN2's modulated convolution (section 2.2, eq. 1-3).

    x [N, I, H, W]; weight [O, I, k, k] (already scaled by the equalised-lr constant); styles [N, I].
    Each sample's weights are w'_oik = s_i w_oik, divided by sigma_o = sqrt(sum_ik w'_oik^2 + 1e-8) when
    `demodulate`. `up`: a 2x transposed convolution followed by the FIR filter `fir` (NVlabs' order).
    `fused`: one grouped convolution over the batch (groups = N); else x * s, an ordinary convolution, and the
    output times 1 / sigma: the same numbers in exact arithmetic.
    """
    n, i = styles.shape
    o, _, kh, kw = weight.shape
    if fused:
        w = modulate_weights(weight, styles, demodulate)                    # [N, O, I, k, k]
        xg = x.reshape(1, n * i, *x.shape[2:])
        if up:
            w = w.transpose(1, 2).reshape(n * i, o, kh, kw)
            out = F.conv_transpose2d(xg, w, stride=2, groups=n)
        else:
            out = F.conv2d(xg, w.reshape(n * o, i, kh, kw), padding=kh // 2, groups=n)
        out = out.reshape(n, o, *out.shape[2:])
    else:
        if demodulate:  # sigma_o^2 = sum_i s_i^2 sum_k w_oik^2: one [N, I] x [I, O] product
            dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # [N, O]
        xs = x * styles.to(x.dtype)[:, :, None, None]
        if up:
            out = F.conv_transpose2d(xs, weight.transpose(0, 1), stride=2)
        else:
            out = F.conv2d(xs, weight, padding=kh // 2)
        if demodulate:
            out = out * dcoefs.to(out.dtype)[:, :, None, None]
    if up:  # (H-1)*2 + k = 2H+1 for k = 3; the filter with padding 1 each side brings it to 2H
        p = (fir.shape[-1] - 2) // 2 + (kh - 3) // 2
        out = upfirdn2d(out, fir, pad=(p, p), gain=4.0)
    return out


# ------------------------------------------------------------------------------------------ mapping

class MappingNetwork(nn.Module):
    """z -> w: `layers` dense layers (LeakyReLU 0.2), at learning-rate multiplier `lr_mul`, on the normalised z.
    Tracks w_avg (decay `w_avg_beta` per training forward) for truncation."""

    def __init__(self, z_dim: int, w_dim: int, layers: int = 8, lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        dims = [z_dim] + [w_dim] * layers
        self.fc = nn.ModuleList(EqualizedLinear(a, b, gain=1.0, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, update_avg: bool = True) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        for layer in self.fc:
            x = lrelu(layer(x))
        if self.training and update_avg:  # NVlabs: training forwards of the main latents move the average
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x


# ------------------------------------------------------------------------------------------ the generator API

class StyleGenerator(nn.Module):
    """Base of the style-based generators. Subclasses set `self.mapping`, `self.num_ws`, `self.z_dim` and define
    `synthesis(ws, noise)` and `noise_shapes()`.

    forward(z, noise=None, z2=None, mix_cutoff=None, psi=None): w = mapping(z), broadcast to num_ws layers;
    with `z2` and `mix_cutoff` k (style mixing), layers >= k take mapping(z2)'s w; `psi` truncates toward w_avg.
    noise: one tensor [N, 1, R, R] per noise input (`noise_shapes()`), or None for none (deterministic output).
    """
    has_mapping = True

    def ws(self, z: torch.Tensor, z2: torch.Tensor | None = None, mix_cutoff: int | torch.Tensor | None = None,
           psi: float | None = None, psi_cutoff: int | None = None) -> torch.Tensor:
        """The per-layer styles' w [N, num_ws, w_dim] for latents z (see forward)."""
        w = self.mapping(z)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if z2 is not None and torch.is_tensor(mix_cutoff):
            # training (the recipe passes k as a tensor when it mixes): the same styles by a mask, so that a
            # compiled G has one graph for every crossover layer instead of one per layer
            w2 = self.mapping(z2, update_avg=False)
            first = torch.arange(self.num_ws, device=ws.device) < mix_cutoff.to(ws.device)
            ws = torch.where(first[None, :, None], ws, w2[:, None])
        elif z2 is not None and mix_cutoff is not None and mix_cutoff < self.num_ws:
            w2 = self.mapping(z2, update_avg=False)  # the mixing latent leaves w_avg alone, as NVlabs' loss
            k = int(mix_cutoff)
            ws = torch.cat([ws[:, :k], w2[:, None].expand(-1, self.num_ws - k, -1)], dim=1)
        if psi is not None and psi != 1:
            ws = self.truncate(ws, psi, psi_cutoff)
        return ws

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """w' = w_avg + psi (w - w_avg) in the first `cutoff` layers (all by default)."""
        avg = self.mapping.w_avg.to(ws.dtype)
        t = avg.lerp(ws, psi)
        if cutoff is None or cutoff >= self.num_ws:
            return t
        return torch.cat([t[:, :cutoff], ws[:, cutoff:]], dim=1)

    def forward(self, z: torch.Tensor, noise: list[torch.Tensor] | None = None, z2: torch.Tensor | None = None,
                mix_cutoff: int | None = None, psi: float | None = None) -> torch.Tensor:
        img = self.synthesis(self.ws(z, z2, mix_cutoff, psi), noise)
        return img if self.training else img.clamp(-1, 1)

    def layer_resolutions(self) -> list[int]:
        """The resolution each of the num_ws styles acts at (for the mixing figure's coarse/middle/fine)."""
        raise NotImplementedError


def style_groups(G: StyleGenerator) -> dict[str, range]:
    """The paper's figure 3 split of the styles: coarse (4x4-8x8), middle (16x16-32x32), fine (64x64 and up)."""
    res = G.layer_resolutions()
    out = {}
    for name, lo, hi in (("coarse", 4, 8), ("middle", 16, 32), ("fine", 64, 1 << 30)):
        idx = [i for i, r in enumerate(res) if lo <= r <= hi]
        if idx:
            out[name] = range(idx[0], idx[-1] + 1)
    return out
