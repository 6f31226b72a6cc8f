"""Pictures: sample grids, the training-progress GIF, interpolation strips. Every writer takes `meta`, the image's
origin (ganforge.provenance): PNG text chunks, or a GIF's comment."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from .provenance import PREFIX, gif_comment, png_info

GIF_GREY_COLOURS = 64     # adaptive grey levels: a sample grid looks the same as with 256, and the GIF is far smaller
GIF_COLOUR_COLOURS = 256  # colour needs the whole GIF palette (and dithering) to stay free of banding
GIF_PALETTE_FRAMES = 8    # frames the shared palette is fitted on, evenly spread over the film, last included


def _uint8_nchw(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] floats in [-1, 1] -> uint8 [N, C, H, W] on the CPU."""
    return images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def to_hwc_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] floats in [-1, 1] -> [N, H, W, C] uint8 (what PIL and .npz files want)."""
    return _uint8_nchw(images).permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """A grid of images as one HxWxC uint8 array, `nrow` images per row (default: square-ish), with white
    padding so dark samples stay visible. torchvision's make_grid lays it out."""
    from torchvision.utils import make_grid as tv_make_grid

    x = _uint8_nchw(images)  # [N, C, H, W]
    n, c = x.shape[:2]
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    grid = tv_make_grid(x, nrow=nrow, padding=padding, pad_value=255)  # [3 or C, H', W']
    if n == 1 and padding:  # torchvision returns a lone image as it is; a grid of one keeps its frame
        grid = torch.nn.functional.pad(grid, (padding,) * 4, value=255)
    return grid[:c].permute(1, 2, 0).numpy()  # grey comes back as 3 equal channels: keep one


def to_pil(arr: np.ndarray, scale: int = 1):
    """An HxWxC uint8 array (C = 1 or 3) as a PIL image, scaled up `scale` times (nearest)."""
    from PIL import Image

    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def _auto_scale(arr: np.ndarray) -> int:
    return max(1, int(round(512 / max(arr.shape[0], arr.shape[1], 1))))  # about 512 px on screen


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, meta: dict | None = None,
              scale: int | None = None) -> Path:
    """A grid of images as a PNG, scaled up to about 512 px on screen (or `scale` times)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, nrow)
    tmp = path.with_name(f".{path.name}.tmp")
    to_pil(grid, scale or _auto_scale(grid)).save(tmp, format="PNG", pnginfo=png_info(meta))
    os.replace(tmp, path)  # a kill mid-write never leaves a truncated grid behind
    return path


def save_images(images: torch.Tensor, folder: Path, start: int = 0, meta: dict | None = None) -> list[Path]:
    """One PNG per image, 000000.png on from `start`; with `meta`, each also says which of the batch it is
    (ganforge:index), so a single file still names its seed's draw."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, arr in enumerate(to_hwc_uint8(images)):
        p = folder / f"{start + i:06d}.png"
        to_pil(arr).save(p, pnginfo=png_info(meta and {**meta, f"{PREFIX}index": str(start + i)}))
        paths.append(p)
    return paths


def _write_gif(frames: list, path: Path, duration_ms: int, last_hold: int, scale: int = 1,
               meta: dict | None = None) -> Path:
    """PIL frames (mode L or RGB) -> an animated GIF, written atomically, on one adaptive palette.

    The palette is fitted once on a few frames and shared, so colours do not flicker between frames and
    Pillow's optimiser can store each frame as its difference from the last. Frames are quantised at their
    own size and then scaled up (nearest), so any dithering stays at the image's pixel size."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = all(f.mode == "L" for f in frames)
    rgb = [f.convert("RGB") for f in frames]
    picks = sorted(set(np.linspace(0, len(rgb) - 1, min(len(rgb), GIF_PALETTE_FRAMES)).round().astype(int)))
    width, height = max(rgb[i].width for i in picks), sum(rgb[i].height for i in picks)
    mosaic = Image.new("RGB", (width, height))
    y = 0
    for i in picks:
        mosaic.paste(rgb[i], (0, y))
        y += rgb[i].height
    palette = mosaic.quantize(colors=GIF_GREY_COLOURS if grey else GIF_COLOUR_COLOURS, method=Image.Quantize.MEDIANCUT)
    dither = Image.Dither.NONE if grey else Image.Dither.FLOYDSTEINBERG  # grey: 64 levels need no dither
    indexed = [f.quantize(palette=palette, dither=dither) for f in rgb]
    if scale > 1:
        indexed = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in indexed]
    durations = [duration_ms] * (len(indexed) - 1) + [duration_ms * (1 + last_hold)]  # rest on the final frame
    tmp = path.with_name(f".{path.name}.tmp")
    indexed[0].save(tmp, format="GIF", save_all=True, append_images=indexed[1:], duration=durations, loop=0,
                    optimize=True, comment=gif_comment(meta))
    os.replace(tmp, path)  # a kill mid-write never leaves a truncated GIF behind
    return path


def save_gif(frames: list[np.ndarray], path: Path, duration_ms: int = 120, last_hold: int = 10,
             meta: dict | None = None) -> Path:
    """HxWxC uint8 frames (as make_grid returns) -> an animated GIF about 512 px on screen."""
    return _write_gif([to_pil(f) for f in frames], path, duration_ms, last_hold, scale=_auto_scale(frames[0]),
                      meta=meta)


def build_progress_gif(samples_dir: Path, max_frames: int = 60, out: Path | None = None,
                       shrink: int = 1, meta: dict | None = None, top_half: bool = False) -> Path | None:
    """samples/step_*.png -> samples/progress.gif (or `out`): the article's "digits appearing as the GAN
    learns". `shrink` divides the grids' on-screen size, `top_half` keeps the upper half of the rows (an even
    number of rows splits on the padding): small copies for the docs."""
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
                frame = im.convert("L") if im.mode == "L" else im.convert("RGB")
                if top_half:
                    frame = frame.crop((0, 0, frame.width, frame.height // 2))
                if shrink > 1:
                    frame = frame.resize((frame.width // shrink, frame.height // shrink), Image.NEAREST)
                frames.append(frame)
        except OSError:  # a grid damaged by a crash in an older version: leave it out of the film
            continue
    if not frames:
        return None
    # the grids are already at screen size (save_grid scaled them): no further scaling
    return _write_gif(frames, out or samples_dir / "progress.gif", duration_ms=150, last_hold=10, meta=meta)


