"""Named paired datasets for image-to-image translation (pix2pix, Isola et al. 2017), made on this machine from
data it already has. Each item is the generator's input `source` and its target `image`:

- `edges2fashion`: Fashion-MNIST's items and their edges, as pix2pix's edges2shoes and edges2handbags (edges
  by a detector, black on white -> the photo). Each 28px item is padded to 32 (as the `fashion-mnist` dataset
  is served), its edges found by Canny (scikit-image, sigma 1) on the 32px image and drawn black (0) on white
  (255). The train (60k) and test (10k) splits are Fashion-MNIST's; the edges are computed once per split and
  cached in `cache_dir()/edges2fashion/{split}.npz`.
- `gray2emoji`: colourisation of the `emoji` dataset (Noto Color Emoji over white): the source is the
  emoji's luma (Pillow's convert("L")) in three channels, the target the colour emoji. One emoji in ten is held
  out as the test split, chosen by a hash of its file's path, so the split never changes between machines.

Both keep their underlying dataset's class labels. `load_data(name, resolution, split, channels, needs,
direction=...)` serves them (and applies `direction`); the makers here give the AtoB form.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..registry import GanforgeError
from .sources import (DATASETS, IDX_FILES, ImageData, _grey_as, _resize, cache_dir, index_folder, load_idx_dataset,
                      locate, read_image, rendered_folder, resize_uint8)

EDGE_SIGMA = 1.0
# What the edges2fashion cache was made by; a cache whose marker differs is made again.
EDGES_RECIPE = {"version": 1, "from": "fashion-mnist padded 28->32", "detector": "skimage.feature.canny",
                "sigma": EDGE_SIGMA, "thresholds": "skimage defaults", "edge": 0, "background": 255}
EDGES_BASE = 32
EMOJI_BASE = 64
EMOJI_TEST_MODULUS = 10  # one emoji in ten is held out


# ---------------------------------------------------------------------------------------------- edges2fashion

def edge_map(images):
    """Canny edges (scikit-image, sigma 1, its default thresholds) of uint8 grey images [N, 1, H, W]: uint8
    [N, 1, H, W], 0 on an edge and 255 elsewhere (black lines on white, as pix2pix's edges2shoes). A torch
    tensor in gives a tensor out, a numpy array an array."""
    from skimage.feature import canny

    is_tensor = isinstance(images, torch.Tensor)
    arr = images.numpy() if is_tensor else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 1:
        raise GanforgeError(f"edge_map takes uint8 grey images [N, 1, H, W], got {arr.dtype} {list(arr.shape)}")
    out = np.full(arr.shape, 255, np.uint8)
    for i in range(arr.shape[0]):
        out[i, 0][canny(arr[i, 0], sigma=EDGE_SIGMA)] = 0
    return torch.from_numpy(out) if is_tensor else out


def _edges_file(split: str) -> Path:
    return cache_dir() / "edges2fashion" / f"{split}.npz"


def _read_edges(file: Path, marker: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached edge maps if `file` was made by this recipe from these images, else None."""
    try:
        with np.load(file, allow_pickle=False) as z:
            if str(z["recipe"]) != marker:
                return None
            bits = z["edges"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # absent, half-written by an older version, or corrupt: made again
    if bits.shape != (*shape[:-1], (shape[-1] + 7) // 8):
        return None
    on_edge = np.unpackbits(bits, axis=-1, count=shape[-1]).astype(bool)
    return np.where(on_edge, np.uint8(0), np.uint8(255))


def _write_edges(file: Path, marker: str, edges: np.ndarray) -> None:
    """Write the cache atomically (a temporary file renamed into place); an unwritable cache only warns."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".partial", dir=file.parent)
    except OSError as e:
        warnings.warn(f"cannot cache the edges2fashion edges in {file.parent} ({e}); they will be computed again",
                      stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, edges=np.packbits(edges == 0, axis=-1), recipe=np.array(marker))
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def edges2fashion_base(split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Path]:
    """Fashion-MNIST's `split` at 32px and its edge maps: (images, edges) uint8 [N, 1, 32, 32], labels int64
    [N], and the cache file. The edges are computed on the first call and cached; the cache is used while its
    marker matches this recipe and the images it was made from (their count and CRC-32)."""
    if split not in IDX_FILES:
        raise GanforgeError(f"edges2fashion has the splits {', '.join(IDX_FILES)}, not {split!r}")
    images, labels = load_idx_dataset(locate("fashion-mnist", split), split)
    images = resize_uint8(images, EDGES_BASE)  # 28 -> 32: padded with background, as fashion-mnist is served
    raw = images.numpy()
    marker = json.dumps({**EDGES_RECIPE, "split": split, "images": raw.shape[0],
                         "crc32": zlib.crc32(raw.tobytes())}, sort_keys=True)
    file = _edges_file(split)
    edges = _read_edges(file, marker, raw.shape)
    if edges is None:
        edges = edge_map(raw)
        _write_edges(file, marker, edges)
    return images, torch.from_numpy(edges), labels, file


def make_edges2fashion(resolution: int, split: str = "train", channels: int | None = None) -> ImageData:
    """edges2fashion at `resolution` (both fields resized from 32), grey or replicated to 3 channels."""
    images, edges, labels, file = edges2fashion_base(split)
    fields = {"image": _grey_as(_resize(images, resolution), channels),
              "source": _grey_as(_resize(edges, resolution), channels)}
    return ImageData("edges2fashion", str(file), fields=fields, labels=labels,
                     classes=DATASETS["fashion-mnist"].classes)


# ---------------------------------------------------------------------------------------------- gray2emoji

def gray2emoji_split(relative_path: str | Path) -> str:
    """"test" for one emoji in ten (by the CRC-32 of its path below the emoji folder, e.g.
    "animals-and-nature/1f408.png"), else "train": the same split at every size and on every machine."""
    key = Path(relative_path).as_posix()
    return "test" if zlib.crc32(key.encode()) % EMOJI_TEST_MODULUS == 0 else "train"


def luma(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> H x W x 3 uint8: Pillow's convert("L") (ITU-R 601-2 luma) in every channel."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    return np.repeat(grey[:, :, None], 3, axis=2)


def make_gray2emoji(resolution: int, split: str = "train", channels: int | None = None) -> ImageData:
    """gray2emoji at `resolution`: read from the emoji folder rendered at 64px (at `resolution` when larger,
    so the targets are never upscaled), resized with `_resize` below 64."""
    if split not in ("train", "test"):
        raise GanforgeError(f"gray2emoji has the splits train and test, not {split!r}")
    if channels == 1:
        raise GanforgeError("gray2emoji is colourisation: its images are RGB (data.channels 0 or 3, not 1)")
    base = max(EMOJI_BASE, resolution)
    folder = rendered_folder("emoji", base)  # without the font or emoji-test.txt, emoji.py's error comes through
    index = index_folder(folder, 3)
    keep = [i for i, f in enumerate(index.files) if gray2emoji_split(f.relative_to(folder)) == split]
    if not keep:
        raise GanforgeError(f"gray2emoji: no emoji of {folder} fall in the {split} split")
    rgb = np.stack([read_image(index.files[i], base, 3)["image"] for i in keep])
    grey = np.stack([luma(a) for a in rgb])

    def nchw(a: np.ndarray) -> torch.Tensor:
        return _resize(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous(), resolution)

    labels = torch.tensor([index.labels[i] for i in keep], dtype=torch.int64) if index.labels is not None else None
    return ImageData("gray2emoji", str(folder), fields={"image": nchw(rgb), "source": nchw(grey)}, labels=labels,
                     classes=index.classes)


# ---------------------------------------------------------------------------------------------- registry

# name -> maker(resolution, split, channels) -> in-memory ImageData with "image" (target) and "source" (input)
PAIRED = {"edges2fashion": make_edges2fashion, "gray2emoji": make_gray2emoji}


def paired_status() -> list[dict]:
    """`ganforge data list` rows of the paired datasets (nothing computed or downloaded)."""
    rows = []
    try:
        where = str(locate("fashion-mnist", "train", download=False))
        cached = all(_edges_file(s).is_file() for s in IDX_FILES)
        where += f" (edges cached in {_edges_file('train').parent})" if cached else " (edges made on first use)"
    except GanforgeError:
        where = None
    rows.append({"name": "edges2fashion", "found": where, "classes": len(DATASETS["fashion-mnist"].classes),
                 "install": f"apt-get install {DATASETS['fashion-mnist'].debian_package}"})
    from .sources import EMOJI_INSTALL, emoji_found

    rows.append({"name": "gray2emoji", "found": emoji_found(), "classes": 9, "install": EMOJI_INSTALL})
    return rows


def prepare_paired(name: str) -> Path:
    """Make `name` ready: edges2fashion fetches Fashion-MNIST if need be and caches both splits' edges."""
    if name == "edges2fashion":
        for split in IDX_FILES:
            locate("fashion-mnist", split, download=True)
            edges2fashion_base(split)
        return _edges_file("train").parent
    return rendered_folder("emoji", EMOJI_BASE)
