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
