"""Pictures: sample grids, the training-progress GIF, interpolation strips."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] floats in [-1, 1] -> [N, H, W, C] uint8."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """A grid of images as one HxWxC uint8 array (white padding, so dark samples stay visible)."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = np.full((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y: y + h, x: x + w] = arr[i]
    return grid


def _image(arr: np.ndarray, scale: int = 1):
    from PIL import Image

    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def _auto_scale(arr: np.ndarray) -> int:
    return max(1, int(round(512 / max(arr.shape[0], arr.shape[1], 1))))  # about 512 px on screen


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, nrow)
    tmp = path.with_name(f".{path.name}.tmp")
    _image(grid, _auto_scale(grid)).save(tmp, format="PNG")
    os.replace(tmp, path)  # a kill mid-write never leaves a truncated grid behind
    return path


def save_images(images: torch.Tensor, folder: Path, start: int = 0) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, arr in enumerate(to_uint8(images)):
        p = folder / f"{start + i:06d}.png"
        _image(arr).save(p)
        paths.append(p)
    return paths


def save_gif(frames: list[np.ndarray], path: Path, duration_ms: int = 120, last_hold: int = 10) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = _auto_scale(frames[0])
    imgs = [_image(f, scale) for f in frames]
    imgs += [imgs[-1]] * last_hold  # rest on the final frame
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return path


def build_progress_gif(samples_dir: Path, max_frames: int = 60) -> Path | None:
    """samples/step_*.png -> samples/progress.gif: the article's "digits appearing as the GAN learns"."""
    from PIL import Image

    samples_dir = Path(samples_dir)
    grids = sorted(p for p in samples_dir.glob("step_*.png") if re.match(r"step_\d+\.png$", p.name))
    if not grids:
        return None
    if len(grids) > max_frames:  # keep the first and last, evenly thinned between
        keep = np.linspace(0, len(grids) - 1, max_frames).round().astype(int)
        grids = [grids[i] for i in sorted(set(keep))]
    frames = []
    for p in grids:
        try:
            with Image.open(p) as im:
                frames.append(im.convert("RGB"))
        except OSError:  # a grid damaged by a crash in an older version: leave it out of the film
            continue
    if not frames:
        return None
    out = samples_dir / "progress.gif"
    tmp = samples_dir / ".progress.gif.tmp"
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:] + [frames[-1]] * 10, duration=150,
                   loop=0)
    os.replace(tmp, out)
    return out
