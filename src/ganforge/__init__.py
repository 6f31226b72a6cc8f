"""ganforge: the evolution of GANs (2014 -> 2018) in one tested package.

    import ganforge
    G = ganforge.load("runs/my-run")          # a run directory, checkpoint or exported .safetensors
    images = G.sample(16, seed=0)             # [16, C, H, W] in [-1, 1]
    out = ganforge.load("runs/edges").translate(edges)   # pix2pix: images in, images out
"""
from __future__ import annotations

__version__ = "0.2.0"

from .registry import GanforgeError, get_model, list_models  # noqa: E402
from .sampling import Generator, latent_arithmetic, load  # noqa: E402


def generate(path, n: int = 16, seed: int | None = 0, truncation: float | None = None):
    """Load a model and sample `n` images: [n, C, H, W] in [-1, 1]."""
    return load(path).sample(n, seed=seed, truncation=truncation)


def translate(path, images, seed: int | None = 0):
    """Load a translation model (pix2pix) and translate `images` [N, C, H, W] in [-1, 1]."""
    return load(path).translate(images, seed=seed)


__all__ = ["GanforgeError", "Generator", "generate", "get_model", "latent_arithmetic", "list_models", "load",
           "translate", "__version__"]
