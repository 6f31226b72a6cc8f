"""The model registry: every GAN family registers its builder here, and tests iterate over it.

Modelled on torchvision's `register_model` / `get_model` / `list_models`: a typed builder per name,
duplicate names are an error, an unknown name is an error that lists the known ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


class GanforgeError(Exception):
    """An error a user can act on; the CLI prints its message as one line, never a traceback."""


def check_version(version, newest: int, what: str) -> None:
    """A saved file's version must be one this ganforge reads (1 to `newest`); the error names it."""
    if not isinstance(version, int) or version < 1:
        raise GanforgeError(f"{what} has no known ganforge version ({version!r})")
    if version > newest:
        raise GanforgeError(f"{what} is version {version}, written by a newer ganforge; this one reads versions 1 "
                            f"to {newest}: upgrade ganforge")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type                       # the family's config dataclass (architecture only)
    build: Callable[..., tuple[nn.Module, nn.Module]]  # build(cfg, resolution, channels) -> (G, D)
    paper: str                             # "Authors Year, Title, link"
    arxiv: str = ""                        # the paper's arXiv id ("1406.2661"): when it appeared, in order
    added: str = ""                        # what the paper added to what came before, in a paragraph (reports)
    recipe: str = "unconditional"          # how the family trains (see ganforge.recipes)
    train_defaults: dict[str, Any] = field(default_factory=dict)  # paper's optimiser and loss
    optimizer_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # per train.optimizer: the
                                           # paper's settings for it (unless the user sets them)
    resolutions: tuple[int, ...] = ()      # resolutions the paper uses (others may still build)
    cpu_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"arch": {...}, "recipe": {...}}:
                                           # a scaled-down network and schedule for runs on a CPU, each key
                                           # applied unless the user sets it, and announced


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **kwargs) -> Callable:
    """Decorator for a family's `build` function: `@register_model("dcgan", config_cls=..., paper=...)`."""

    def wrap(build):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelSpec(name=name, build=build, **kwargs)
        return build

    return wrap


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers every family)


def get_model(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        raise GanforgeError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}") from None


def arxiv_year(spec: ModelSpec) -> int | None:
    """The year the paper appeared (on arXiv; the published year can be later)."""
    return 2000 + int(spec.arxiv[:2]) if spec.arxiv[:2].isdigit() else None


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_MODELS)
