"""Recipes: how a family trains. A recipe names its phases and turns a phase into a dict of losses;
the loop (train/loop.py) does backward, optimiser steps, EMA, checkpoints and logging."""
from __future__ import annotations

from dataclasses import dataclass

from .unconditional import Unconditional


@dataclass(frozen=True)
class Phase:
    name: str                  # "D", "G", later "D_reg", "G_reg"
    trains: str                # which network's optimiser steps
    frozen: tuple[str, ...] = ()  # networks whose weights need no gradient in this phase (saves backward work)
    every: int = 1             # lazy regularisation: run only every N steps


RECIPES = {"unconditional": Unconditional}
