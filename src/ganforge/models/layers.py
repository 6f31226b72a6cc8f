"""Blocks that two or more families use unchanged (each family's own blocks stay in its file)."""
from __future__ import annotations

import torch


def check_labels(c: torch.Tensor | None, num_classes: int, n: int) -> torch.Tensor | None:
    """The class labels a conditional network needs ([N] int64); None for an unconditional one, which ignores
    labels so that one loop serves both."""
    if num_classes == 0:
        return None
    if c is None:
        raise ValueError(f"this network is class-conditional (num_classes={num_classes}): pass labels c")
    if c.shape != (n,):
        raise ValueError(f"labels c must have shape [{n}], got {list(c.shape)}")
    return c


# ---------------------------------------------------------------- Progressive GAN's layers (StyleGAN reuses them)

class EqualizedLinear(torch.nn.Module):
    """A linear layer with the equalised learning rate of Karras et al. 2017 (section 4.1): weights are stored
    as N(0, 1) / lr_mul and multiplied at run time by gain / sqrt(fan_in) * lr_mul (He's constant), so Adam's
    scale-free updates move every layer at the same relative speed. `lr_mul` < 1 slows a layer down
    (StyleGAN's mapping network: 0.01). Biases start at `bias_init`."""

    def __init__(self, in_features: int, out_features: int, gain: float = 2 ** 0.5, lr_mul: float = 1.0,
                 bias: bool = True, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.lr_mul = in_features, out_features, lr_mul
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = torch.nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = gain / in_features ** 0.5 * lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return torch.nn.functional.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, scale={self.scale:.4g}, lr_mul={self.lr_mul}"


class EqualizedConv2d(torch.nn.Module):
    """A stride-1 'same' convolution with the equalised learning rate (see EqualizedLinear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = 2 ** 0.5,
                 bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / (in_channels * kernel_size * kernel_size) ** 0.5
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, scale={self.scale:.4g}"


class PixelNorm(torch.nn.Module):
    """Pixelwise feature vector normalisation (Karras et al. 2017, section 4.2): each pixel's feature vector
    scaled to unit mean square over channels (dim 1), epsilon 1e-8."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(torch.nn.Module):
    """Minibatch standard deviation (Karras et al. 2017, section 3): the batch is split into groups of
    `group_size` (sample i in group i mod N/G, as the official code reshapes); per group, the standard
    deviation of every feature over the group, averaged over features and pixels, is appended as one more
    channel. A batch that `group_size` does not divide uses its largest divisor below it, so any batch size
    works (the official code requires a multiple)."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        y = x.float().reshape(g, n // g, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(self.eps).sqrt()   # [N/G, C, H, W]
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)                                # [N/G]
        y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)             # sample i <- group i mod N/G
        return torch.cat([x, y], dim=1)


def upscale2d(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour doubling (Progressive GAN's upsampling)."""
    return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def downscale2d(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (Progressive GAN's downsampling, for D and for the faded-in real images)."""
    return torch.nn.functional.avg_pool2d(x, 2)
