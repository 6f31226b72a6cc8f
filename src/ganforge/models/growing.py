"""Networks that grow (Progressive GAN; StyleGAN v1 reuses this): built whole at the final resolution, they run
the stage the training schedule sets with `set_growth(resolution, alpha)`.

The stage is kept twice: as Python numbers, which the forward pass branches on (no host sync per step on a
GPU), and as the buffer `growth_state` = [resolution, alpha], so a checkpoint records it, the EMA generator
copies it, and a generator loaded mid-training samples at the stage it was trained to. Loading a state dict
re-reads the buffer into the Python numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def check_growth_resolution(resolution: int, what: str = "resolution") -> int:
    """A power of two >= 4, or a ValueError that says so."""
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"{what} must be a power of two >= 4 (4, 8, 16, 32, 64, 128, ...), got {resolution}")
    return resolution


class Growing(nn.Module):
    """Mixin for a G or D that grows from 4x4 to `self.resolution` by doubling."""

    def _init_growth(self, resolution: int) -> None:
        self.resolution = check_growth_resolution(resolution)
        self.stage_resolution, self.alpha, self._fading = resolution, 1.0, False
        self.register_buffer("growth_state", torch.tensor([float(resolution), 1.0]))
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._read_growth())

    @property
    def resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        return [2 ** k for k in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def growth(self) -> tuple[int, float]:
        return self.stage_resolution, self.alpha

    def set_growth(self, resolution: int, alpha: float = 1.0) -> None:
        """Run at `resolution`, its newest block faded in by `alpha` (0: the previous stage's output exactly,
        1: the new block alone)."""
        if resolution not in self.resolutions:
            raise ValueError(f"stage resolution {resolution} is not one of this network's "
                             f"({', '.join(map(str, self.resolutions))})")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"fade-in alpha must lie in [0, 1], got {alpha}")
        if resolution == 4:
            alpha = 1.0  # nothing to fade from
        if (resolution, alpha) != (self.stage_resolution, self.alpha):
            self.stage_resolution, self.alpha = resolution, alpha
            self._fading = alpha < 1.0 and resolution > 4
            with torch.no_grad():
                self.growth_state[0].fill_(float(resolution))
                self.growth_state[1].fill_(alpha)

    def _read_growth(self) -> None:
        r, a = self.growth_state.tolist()
        self.set_growth(int(round(r)), a)

    @property
    def fading(self) -> bool:
        # a bool set with the stage, not `self.alpha < 1`: torch.compile would then guard on alpha's value and
        # recompile at every step of a fade-in
        return self._fading

    def fade(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """lerp(old, new, alpha): the fade-in of the newest block. Eager, alpha is the Python number; under
        torch.compile it is read from the `growth_state` buffer (a graph input), so one graph serves the whole fade."""
        if torch.compiler.is_compiling():
            return torch.lerp(old.float(), new.float(), self.growth_state[1]).to(new.dtype)
        return torch.lerp(old, new, self.alpha)
