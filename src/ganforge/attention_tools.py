"""Where self-attention looks: SAGAN's figures 1 and 5 (Zhang et al. 2019), for models whose generator has
self-attention layers (`G.attention`, a ModuleDict of `models.sagan.SelfAttention` keyed by resolution).

For a few query points on each generated image, the figure shows the softmax weights beta_j. of that query
position j over every key position i of one attention layer of G: one row per seed, first the image with the
query points marked in distinct colours, then one panel per point, the point's attention map as a heat map
(black -> red -> yellow -> white, each map divided by its own maximum) over a greyed copy of the image.

As every tool, it asks the network, never the family's name: a model without attention layers gets one clear
error. The maps come from the layer's explicit softmax path (`keep_attention`), switched on only for this call.

- `attention_maps`: the images and, for every query position of the chosen layer, its weights over the key
  grid (with `arch.attn_pool` the keys are max-pooled 2x2, so the key grid is half the layer's resolution);
- `attention_figure`: the figure, as a PIL image (RGB);
- `save_attention_figure`: the figure as a PNG, written atomically, never over an existing file unless asked, with
  its origin (`meta`) as PNG text.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .recipes import chunks, full_size, to_device
from .registry import GanforgeError

DEFAULT_POINTS = ((0.25, 0.25), (0.5, 0.5), (0.75, 0.6))  # (y, x) fractions of the image
PAD = 2                    # white padding between panels (and around them), as the other figures
PANEL_PX = 128             # about how large each panel is drawn by default
# Marker colours: picked to stand out on the heat map (black, red, yellow, white) and on grey images
MARKER_COLOURS = ((0, 200, 255), (0, 230, 0), (255, 0, 255), (40, 80, 255), (0, 255, 170), (160, 60, 255),
                  (0, 120, 120), (255, 130, 200))
# The heat map's colour stops: black -> red -> yellow -> white
HEAT_STOPS = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


# ------------------------------------------------------------------------------------------ the layers

@functools.cache
def attention_models() -> tuple[str, ...]:
    """The registered families whose generator has self-attention layers, found by building each on the meta
    device (no memory, no time) with its default config (unconditional) and asking the network."""
    from .registry import get_model, list_models

    def has_attention(name: str) -> bool:
        spec = get_model(name)
        try:
            cfg = spec.config_cls()
            if getattr(cfg, "num_classes", 0) < 0:  # "as the data": resolved only when a run starts
                cfg.num_classes = 0
            with torch.device("meta"):
                G, _ = spec.build(cfg, 64, 3)
        except Exception:  # noqa: BLE001 (a family that cannot build this way is simply not listed)
            return False
        return bool(_layers_of(G))

    return tuple(name for name in list_models() if has_attention(name))


def _layers_of(net: torch.nn.Module) -> dict[str, torch.nn.Module]:
    layers = getattr(net, "attention", None)
    if not isinstance(layers, torch.nn.ModuleDict):
        return {}
    return {k: m for k, m in layers.items() if hasattr(m, "keep_attention")}


def attention_layer(gen, layer: int | str | None = None) -> tuple[int, torch.nn.Module]:
    """(resolution, module) of one of G's attention layers: `layer` (its resolution), or by default the
    highest-resolution one. A clear error for a model without attention or an unknown layer."""
    layers = _layers_of(gen.net)
    if not layers:
        families = ", ".join(attention_models()) or "sagan"
        raise GanforgeError(f"the attention figure needs a model with self-attention ({families}); "
                            f"{gen.origin} is a {gen.cfg.model} without attention layers in its generator")
    by_res = dict(sorted(((int(k), m) for k, m in layers.items())))
    if layer is None:
        res = max(by_res)
        return res, by_res[res]
    valid = ", ".join(map(str, by_res))
    try:
        res = int(str(layer).strip())
    except ValueError:
        res = None
    if res not in by_res:
        raise GanforgeError(f"no attention layer at {layer!r} in {gen.origin}: its generator attends at "
                            f"{valid} (give one of these as the layer)")
    return res, by_res[res]


def _square(n: int, what: str) -> int:
    s = math.isqrt(n)
    if s * s != n:
        raise GanforgeError(f"the attention layer's {what} ({n} positions) is not a square grid")
    return s


# ------------------------------------------------------------------------------------------ the maps

def attention_maps(gen, seeds: list[int], labels=None, layer: int | str | None = None,
                   batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The seeds' images [N, C, R, R] in [-1, 1] and the chosen attention layer's maps [N, HW, h', w']: for
    each query position j (row-major on the layer's h x w grid: j = y * w + x) its softmax weights over the
    key grid h' x w' (h x w, or h/2 x w/2 where the keys are pooled); each map sums to 1. Returns
    (images, maps, the layer's resolution). G runs in eval mode without gradients, on the inputs of
    `gen.inputs_for_seeds` (each seed's own sample); `labels`: one class (index or name) or one per seed, for
    a class-conditional model. The layer's `keep_attention` is switched back off afterwards, whatever
    happens."""
    res, module = attention_layer(gen, layer)
    seeds = list(seeds)
    if not seeds:
        raise GanforgeError("give at least one seed")
    if hasattr(gen, "inputs_for_seeds"):
        inputs = gen.inputs_for_seeds(seeds, labels=labels)
    else:
        inputs = gen.inputs(len(seeds), seeds[0], labels=labels)
    net = gen.net
    device = next(net.parameters()).device
    was_training, was_keeping = net.training, module.keep_attention
    images, maps = [], []
    try:
        net.eval()
        module.keep_attention = True
        with torch.no_grad():
            for part in chunks(inputs, batch_size):
                module.attention = None
                out = net(**to_device(part, device))
                if module.attention is None:
                    raise GanforgeError(f"the attention layer at {res}px did not run in {gen.origin}'s generator")
                images.append(full_size(out.float().cpu(), gen.resolution).clamp(-1, 1))
                maps.append(module.attention.float().cpu())
    finally:
        module.keep_attention = was_keeping
        module.attention = None
        net.train(was_training)
    beta = torch.cat(maps)                                  # [N, HW, HW']
    _square(beta.shape[1], "query grid")
    k = _square(beta.shape[2], "key grid")
    return torch.cat(images), beta.reshape(*beta.shape[:2], k, k), res


def check_points(points) -> list[tuple[float, float]]:
    """Query points as (y, x) fractions of the image, each in [0, 1): a clear error otherwise."""
    out = []
    try:
        items = list(points)
    except TypeError:
        items = None
    if not items:
        raise GanforgeError(f"give at least one query point as (y, x) fractions of the image, got {points!r}")
    for p in items:
        try:
            y, x = (float(v) for v in p)
        except (TypeError, ValueError):
            raise GanforgeError(f"a query point is a pair (y, x) of fractions of the image in [0, 1), got "
                                f"{p!r}") from None
        if not (0 <= y < 1 and 0 <= x < 1):
            raise GanforgeError(f"query point (y={y:g}, x={x:g}) is outside the image: y and x are fractions "
                                f"of its height and width, in [0, 1)")
        out.append((y, x))
    return out


def query_cells(points, h: int, w: int) -> list[tuple[int, int]]:
    """(y, x) fractions -> (row, column) of the cell that holds them on an h x w grid (query row y * w + x)."""
    return [(min(int(y * h), h - 1), min(int(x * w), w - 1)) for y, x in check_points(points)]


# ------------------------------------------------------------------------------------------ the figure

def heat_colours(m: np.ndarray) -> np.ndarray:
    """Values in [0, 1] [...] -> RGB in [0, 1] [..., 3]: black -> red -> yellow -> white, piecewise linear."""
    m = np.clip(m, 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(HEAT_STOPS))
    return np.stack([np.interp(m, stops, HEAT_STOPS[:, c]) for c in range(3)], axis=-1)


def _rgb_panel(image: torch.Tensor, size: int) -> np.ndarray:
    """[C, R, R] in [-1, 1] -> [size, size, 3] floats in [0, 1], scaled up (nearest: the model's pixels)."""
    x = image.float().clamp(-1, 1).add(1).div(2)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
    x = F.interpolate(x[None], size=(size, size), mode="nearest")[0]
    return x.permute(1, 2, 0).numpy()


def _draw_marker(img, centre: tuple[float, float], colour: tuple[int, int, int], radius: int) -> None:
    from PIL import ImageDraw

    cy, cx = centre
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    draw = ImageDraw.Draw(img)
    draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=max(1, radius // 3))


def _panel_size(gen, size: int | None) -> int:
    if size is None:
        r = gen.resolution
        return r * max(1, round(PANEL_PX / r))
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise GanforgeError(f"the panel size must be a whole number of pixels >= 8, got {size!r}")
    return size


def attention_figure(gen, seeds: list[int], points=None, labels=None, layer: int | str | None = None,
                     size: int | None = None, mode: str = "nearest"):
    """SAGAN's figure 1 / 5 as a PIL image (RGB): one row per seed, first its image (scaled up to about
    128 px, or `size` px) with every query point marked, then one panel per point: that query position's
    attention over all positions of the layer (upsampled by `mode`, nearest or bilinear), each map divided by
    its maximum and drawn as a heat map over a greyed copy of the image, the point marked in its colour.

    `points`: (y, x) fractions of the image in [0, 1) (default: three spread points); each is drawn at the
    centre of the layer's grid cell it falls in, the query position actually used. The figure measures
    (1 + points) * size + (2 + points) * PAD by seeds * size + (seeds + 1) * PAD pixels."""
    from PIL import Image

    pts = check_points(DEFAULT_POINTS if points is None else points)
    if mode not in ("nearest", "bilinear"):
        raise GanforgeError(f"unknown upsampling {mode!r}; use nearest or bilinear")
    size = _panel_size(gen, size)
    images, maps, _ = attention_maps(gen, seeds, labels=labels, layer=layer)
    n, hw = maps.shape[:2]
    h = w = math.isqrt(hw)
    cells = query_cells(pts, h, w)
    centres = [((cy + 0.5) * size / h, (cx + 0.5) * size / w) for cy, cx in cells]
    colours = [MARKER_COLOURS[i % len(MARKER_COLOURS)] for i in range(len(pts))]
    radius = max(3, size // 28)

    cols = 1 + len(pts)
    canvas = Image.new("RGB", (cols * size + (cols + 1) * PAD, n * size + (n + 1) * PAD), (255, 255, 255))
    for row in range(n):
        top = PAD + row * (size + PAD)
        rgb = _rgb_panel(images[row], size)                                      # [S, S, 3] in [0, 1]
        grey = rgb @ np.array([0.299, 0.587, 0.114])                             # luminance [S, S]
        greyed = np.repeat((0.2 + 0.6 * grey)[..., None], 3, axis=-1)           # dimmed, so the heat shows
        panel = Image.fromarray((rgb * 255).round().astype(np.uint8))
        for centre, colour in zip(centres, colours):
            _draw_marker(panel, centre, colour, radius)
        canvas.paste(panel, (PAD, top))
        for i, ((cy, cx), centre, colour) in enumerate(zip(cells, centres, colours)):
            m = maps[row, cy * w + cx]                                           # [h', w'], sums to 1
            m = m / m.max().clamp_min(1e-12)
            up = F.interpolate(m[None, None], size=(size, size), mode=mode,
                               **({"align_corners": False} if mode == "bilinear" else {}))[0, 0].numpy()
            alpha = (0.35 + 0.6 * up)[..., None]                                 # low attention: the image shows
            blend = greyed * (1 - alpha) + heat_colours(up) * alpha
            heat = Image.fromarray((np.clip(blend, 0, 1) * 255).round().astype(np.uint8))
            _draw_marker(heat, centre, colour, radius)
            canvas.paste(heat, (PAD + (i + 1) * (size + PAD), top))
    return canvas


def save_attention_figure(gen, seeds: list[int], out: str | Path, points=None, labels=None,
                          layer: int | str | None = None, size: int | None = None, mode: str = "nearest",
                          force: bool = False, meta: dict | None = None) -> Path:
    """`attention_figure` as a PNG at `out`, written atomically (a temporary file, then renamed); an existing
    file is an error unless `force`. `meta`: the figure's origin (`Generator.provenance`), as PNG text."""
    from .provenance import png_info

    out = Path(out)
    if out.exists() and not force:
        raise GanforgeError(f"{out} exists; choose another --out or pass --force")
    if out.exists() and not out.is_file():
        raise GanforgeError(f"{out} exists and is not a file")
    img = attention_figure(gen, seeds, points, labels=labels, layer=layer, size=size, mode=mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        img.save(tmp, format="PNG", pnginfo=png_info(meta))
        os.replace(tmp, out)  # a kill mid-write never leaves a truncated figure behind
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
