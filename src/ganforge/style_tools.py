"""Tools for style-based generators (models with a mapping network: StyleGAN, StyleGAN2), shared by the CLI, the
Python API and the web page. All of them go through the one sampling path (`sampling.Generator`: `ws`,
`synthesize`, `inputs_for_seeds`), and all of them ask the network's capabilities, never its family's name: a
model without a mapping network gets one clear error naming what is missing.

- `truncation_strip`: each seed's image as psi goes from 1 (no truncation) to 0 (the average w) (StyleGAN,
  Karras et al. 2019, figure 8).
- `style_mix`: the style-mixing figure (StyleGAN figure 3): column sources on top, row sources on the left, and
  in each band of rows the row source's w with the coarse, middle or fine styles taken from the column source.
- `stochastic_variation`: one w under many draws of the per-pixel noise, and the standard deviation of each
  pixel over the draws (StyleGAN figure 4): what the noise inputs control.
- `project`: the w (and noise maps) that reproduce a real image, found by optimisation as NVlabs' StyleGAN2
  projector does (Karras et al. 2020, section 5; stylegan2-ada-pytorch projector.py), with features that work
  offline (see `ProjectionLoss`).

The figures come back as `Figure`: tiles [rows, cols, C, H, W] in [-1, 1] with a caption per row and column.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .recipes import full_size
from .registry import GanforgeError
from .sampling import Generator


@dataclass
class Figure:
    """A grid of images: `tiles` [rows, cols, C, H, W] in [-1, 1]; `rows` and `cols` say what each row and
    column shows (captions for the web page, the summary the CLI prints); `meta` holds numbers behind it."""
    tiles: torch.Tensor
    rows: list[str]
    cols: list[str]
    meta: dict = field(default_factory=dict)

    def images(self) -> torch.Tensor:
        """The tiles row by row: [rows * cols, C, H, W]."""
        return self.tiles.reshape(-1, *self.tiles.shape[2:])

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        """One PNG, the tiles laid out as the figure (white padding, about 512 px on screen); `meta`: its origin
        (`Generator.provenance`), as PNG text."""
        from .viz import save_grid

        return save_grid(self.images(), Path(path), nrow=self.tiles.shape[1], meta=meta)


def _style_groups(gen: Generator) -> dict[str, range]:
    from .models.style import style_groups

    return style_groups(gen.net)


def _seed_images(gen: Generator, seeds: list[int], ws: torch.Tensor, truncation: float | None,
                 noise: bool) -> torch.Tensor:
    """The seeds' own images: with noise, exactly their plain samples (`gen.sample(1, seed, truncation)`);
    without, their styles `ws` drawn with no noise."""
    if not noise:
        return gen.synthesize(ws, None)
    return torch.cat([gen.generate(gen.inputs(1, s, truncation)) for s in seeds])


def _layers(r: range, res: list[int]) -> str:
    """'styles 0-3, 4-8px': which styles a group holds and the resolutions they act at."""
    lo, hi = res[r.start], res[r.stop - 1]
    return f"styles {r.start}-{r.stop - 1}, {lo}-{hi}px" if lo != hi else f"styles {r.start}-{r.stop - 1}, {lo}px"


# ------------------------------------------------------------------------------------------ truncation

def truncation_strip(gen: Generator, seeds: list[int], psis: list[float] = (1.0, 0.75, 0.5, 0.25, 0.0),
                     noise: bool = True) -> Figure:
    """Rows: the seeds; columns: their images truncated toward the tracked average w by each psi (default 1
    down to 0): w' = w_avg + psi (w - w_avg). Psi 1 is the seed's plain sample; at psi 0 every row is the
    average image (each under its own seed's noise, or none with `noise=False`)."""
    gen.require_mapping("the truncation strip")
    psis = [float(p) for p in psis]
    if not psis or not all(math.isfinite(p) for p in psis):
        raise GanforgeError(f"give at least one finite psi, got {psis}")
    inputs = gen.inputs_for_seeds(seeds)
    rows = []
    for psi in psis:
        ws = gen.ws(inputs, truncation=psi)
        rows.append(gen.synthesize(ws, inputs["noise"] if noise else None))  # [seeds, C, H, W]
    tiles = torch.stack(rows, dim=1)                                          # [seeds, psis, C, H, W]
    return Figure(tiles, [f"seed {s}" for s in seeds], [f"psi {p:g}" for p in psis], {"psis": psis})


# ------------------------------------------------------------------------------------------ style mixing

def style_mix(gen: Generator, row_seeds: list[int], col_seeds: list[int], truncation: float | None = None,
              noise: bool = True) -> Figure:
    """StyleGAN's style-mixing figure (figure 3), laid out as NVlabs' draw_style_mixing_figure: the top row
    holds the column sources' images, the left column the row sources'. Below come one band of rows per style
    group the model has (`models.style.style_groups`: coarse 4-8px, middle 16-32px, fine 64px and up; a 16px
    model has no fine styles), each band showing every row source: a cell is the row source's w with that
    group's styles replaced by the column source's w, under the row source's noise. Coarse styles carry pose
    and shape, middle ones features, fine ones colour and micro-structure.

    `truncation` (psi) applies to both sources; `noise=False` draws every image without noise."""
    gen.require_mapping("style mixing")
    groups = _style_groups(gen)
    res = gen.net.layer_resolutions()
    rows_in, cols_in = gen.inputs_for_seeds(row_seeds, truncation), gen.inputs_for_seeds(col_seeds, truncation)
    w_rows, w_cols = gen.ws(rows_in), gen.ws(cols_in)        # [R, num_ws, w_dim], [K, num_ws, w_dim]
    row_images = _seed_images(gen, row_seeds, w_rows, truncation, noise)
    col_images = _seed_images(gen, col_seeds, w_cols, truncation, noise)
    R, K = len(row_seeds), len(col_seeds)

    cells = []
    for group in groups.values():
        ws = w_rows[:, None].repeat(1, K, 1, 1)                # [R, K, num_ws, w_dim]
        ws[:, :, group.start: group.stop] = w_cols[None, :, group.start: group.stop]
        cells.append(ws.reshape(R * K, *ws.shape[2:]))
    ws = torch.cat(cells)                                      # [bands * R * K, num_ws, w_dim], band, row, col
    row_noise = None
    if noise:  # each cell takes its row source's noise
        row_noise = [t.repeat_interleave(K, dim=0).repeat(len(groups), 1, 1, 1) for t in rows_in["noise"]]
    mixed = gen.synthesize(ws, row_noise).reshape(len(groups), R, K, *row_images.shape[1:])

    blank = torch.ones_like(row_images[0])  # the corner: white, as the paper's figure
    top = torch.cat([blank[None], col_images])[None]                            # [1, K + 1, C, H, W]
    band_tiles = [torch.cat([row_images[:, None], mixed[b]], dim=1) for b in range(len(groups))]  # [R, K + 1, ..]
    tiles = torch.cat([top, *band_tiles])
    bands = [f"{name} ({_layers(r, res)})" for name, r in groups.items()]
    rows = ["column sources"] + [f"seed {s} with the {band} styles of each column" for band in bands
                                 for s in row_seeds]
    cols = ["row sources"] + [f"seed {s}" for s in col_seeds]
    return Figure(tiles, rows, cols, {"groups": {name: [r.start, r.stop] for name, r in groups.items()},
                                      "bands": bands, "layer_resolutions": res})


# ------------------------------------------------------------------------------------------ stochastic variation

def stochastic_variation(gen: Generator, seed: int = 0, n: int = 8, std_draws: int = 64,
                         truncation: float | None = None, noise_seed: int | None = None) -> Figure:
    """One seed's w under different draws of the per-pixel noise (StyleGAN figure 4): one row of the first `n`
    images and, as the last tile, the standard deviation of each pixel over `std_draws` draws (channels
    averaged), scaled so that the most variable pixel is white. The first image is the seed's own sample.

    The draws after the first come from `noise_seed` (default: seed + 1). meta["std"] is the map itself [H, W]
    and meta["max_std"] its largest value (in units of the [-1, 1] image range; 0 where noise does nothing)."""
    gen.require_mapping("stochastic variation")
    if not gen.capabilities["noise"]:
        raise GanforgeError(f"stochastic variation needs a model with noise inputs; {gen.origin} has none")
    if n < 1 or std_draws < 2:
        raise GanforgeError(f"stochastic variation needs n >= 1 images and at least 2 draws, got n={n}, "
                            f"draws={std_draws}")
    std_draws = max(std_draws, n)
    base = gen.inputs(1, seed, truncation)
    ws = gen.ws(base)
    more = gen.inputs(std_draws - 1, seed + 1 if noise_seed is None else noise_seed)["noise"]
    draws = [torch.cat([a, b]) for a, b in zip(base["noise"], more)]
    images = gen.synthesize(ws.expand(std_draws, -1, -1), draws)       # [draws, C, H, W]
    std = images.std(dim=0).mean(dim=0)                                 # [H, W]
    peak = float(std.max())
    tile = (std / peak * 2 - 1) if peak > 0 else torch.full_like(std, -1.0)
    tile = tile[None].expand(gen.channels, -1, -1)
    tiles = torch.cat([images[:n], tile[None]])[None]                   # [1, n + 1, C, H, W]
    cols = [f"noise draw {i}" for i in range(n)] + [f"per-pixel std over {std_draws} draws (white: {peak:.3g})"]
    return Figure(tiles, [f"seed {seed}"], cols, {"std": std, "max_std": peak, "draws": std_draws})


# ------------------------------------------------------------------------------------------ projection

PROJECTION_FILES = ("reconstruction.png", "latent.safetensors", "progress.gif")
LATENT_FORMAT = "ganforge-latent"
LATENT_VERSION = 1


def read_target(gen: Generator, path: str | Path) -> torch.Tensor:
    """An image file -> [1, C, R, R] in [-1, 1] at the model's resolution and channels, read as the data
    loader reads a folder of images (any mode; transparency over white; centre crop to a square, antialiased
    resize). A 28x28 image for a model trained on an IDX dataset (Fashion-MNIST, MNIST) is framed as that
    loader frames its images: padded to 32 with background first."""
    from PIL import Image

    from .data.sources import DATASETS, _read_errors, read_image, resize_uint8, to_unit_range

    p = Path(path)
    if not p.is_file():
        raise GanforgeError(f"--image {p}: no such file" if not p.exists() else f"--image {p} is not a file")
    try:
        with Image.open(p) as im:
            size = im.size
        idx = size == (28, 28) and gen.cfg.data.name in DATASETS
        arr = read_image(p, 28 if idx else gen.resolution, gen.channels)["image"]   # [H, W, C] uint8
    except _read_errors() as e:
        why = (str(e).splitlines() or [""])[0]
        raise GanforgeError(f"--image {p} is not a readable image ({type(e).__name__}: {why})") from None
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]                  # [1, C, H, W]
    return to_unit_range(resize_uint8(x, gen.resolution) if idx else x)


class ProjectionLoss:
    """What projection minimises: the pixel MSE to the target, plus, where the run's dataset has a shipped
    domain classifier for the model's channels (Fashion-MNIST: grey; emoji: colour; metrics/classifier.py), a
    perceptual distance on that classifier's three conv blocks: LPIPS's recipe (Zhang et al. 2018) without
    its learned weights, each block's activations unit-normalised over channels, squared differences summed
    over channels, averaged over positions, summed over blocks. NVlabs' projector uses VGG16 LPIPS, whose
    weights need a download; these work offline and know the domain. Other data: pixel MSE alone (`kind`
    says which)."""

    def __init__(self, gen: Generator, target: torch.Tensor):
        self.target = target
        self.net, self.kind = _feature_net(gen)
        with torch.no_grad():
            self.target_features = self.features(target) if self.net is not None else []

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        if x.shape[1] != net.channels:  # only the luminance of a grey classifier is ever asked for here
            x = x.mean(1, keepdim=True) if net.channels == 1 else x.expand(-1, net.channels, -1, -1)
        if x.shape[-2:] != (32, 32):  # the classifier's input size (the models' images, resized as it does)
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        out = []
        for block in net.body:
            x = block(x)
            out.append(x / (x.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(images, self.target)
        for f, t in zip(self.features(images) if self.net is not None else [], self.target_features):
            loss = loss + (f - t).square().sum(1).mean()
        return loss


def _feature_net(gen: Generator):
    """The run's dataset's domain classifier (or None) and a phrase saying which loss that makes."""
    from .metrics.classifier import load_classifier
    from .metrics.extractors import DOMAIN, default_extractor

    data = gen.cfg.data.name
    name = default_extractor(data)
    if name not in DOMAIN:
        return None, f"pixel MSE (no domain classifier for {data!r})"
    try:
        net = load_classifier(DOMAIN[name])
    except GanforgeError:
        return None, f"pixel MSE (the {name} weights are not installed)"
    if net.channels != gen.channels:
        return None, f"pixel MSE (the {name} reads {net.channels}-channel images, the model makes {gen.channels})"
    return net.to(gen.device), f"{name} features + pixel MSE"


@dataclass
class Projection:
    """What `project` found: `ws` [1, num_ws, w_dim] (one w for every layer) and the noise maps (one
    [1, 1, R, R] per noise input) that together give `image` [1, C, H, W], the reconstruction of `target`."""
    ws: torch.Tensor
    noise: list[torch.Tensor]
    target: torch.Tensor
    image: torch.Tensor
    losses: list[float]       # the distance at each step (with the early steps' perturbation of w)
    initial_loss: float       # at the start (w_avg, the initial noise), unperturbed
    final_loss: float         # at the end, unperturbed: the reconstruction's
    frames: list[torch.Tensor]  # the reconstruction every few steps, [1, C, H, W] each, the last one included
    loss_kind: str
    steps: int


def _noise_regularizer(noise: list[torch.Tensor]) -> torch.Tensor:
    """NVlabs' noise regulariser: squared autocorrelation at one-pixel shifts, at every scale down to 8x8, so
    the optimised noise maps cannot smuggle the image in as a signal."""
    reg = torch.zeros((), device=noise[0].device)
    for n in noise:
        while True:
            reg = reg + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


def project(gen: Generator, target: torch.Tensor, steps: int = 250, seed: int = 0, lr: float = 0.1,
            w_noise: float = 0.05, noise_reg: float = 1e5, optimize_noise: bool = True, w_avg_samples: int = 10000,
            frame_every: int | None = None, callback=None) -> Projection:
    """Find the w (broadcast to every layer) and the noise maps whose image is closest to `target`
    [1, C, R, R] in [-1, 1], by NVlabs' StyleGAN2 projector (stylegan2-ada-pytorch projector.py):

    - w starts at the average w of `w_avg_samples` mapped latents (the tracked w_avg of a well-trained model);
      Adam (betas 0.9, 0.999) at `lr`, ramped up over the first 5% of the steps and down (cosine) over the last
      25%;
    - for the first 75% of the steps, Gaussian noise of std w_std * `w_noise` * (1 - t / 0.75)^2 is added to
      w (w_std: the spread of the mapped latents), to explore before settling;
    - the noise maps are optimised too (`optimize_noise`), with the autocorrelation regulariser at weight
      `noise_reg` and renormalised to zero mean and unit variance after every step;
    - the distance is `ProjectionLoss`: offline features (a domain classifier) plus pixel MSE where the
      run's dataset has one, else pixel MSE.

    NVlabs' default is 1000 steps with VGG16 LPIPS at 256px; 250 steps is enough on small models and takes
    seconds to a minute on a CPU. `callback(step, loss)` is called after every step. All randomness comes
    from `seed`."""
    gen.require_mapping("projection")
    if steps < 1:
        raise GanforgeError(f"projection needs --steps >= 1, got {steps}")
    G, dev = gen.net, gen.device
    want = (1, gen.channels, gen.resolution, gen.resolution)
    target = target.reshape(-1, *target.shape[-3:]) if target.ndim == 3 else target
    if tuple(target.shape) != want:
        raise GanforgeError(f"the target must have shape {list(want)}, got {list(target.shape)}")
    target = target.to(dev, torch.float32)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(w_avg_samples, G.z_dim, generator=rng)
        w = torch.cat([G.mapping(part.to(dev)).float() for part in z.split(1024)])  # [samples, w_dim]
        w_avg = w.mean(0, keepdim=True)                                               # [1, w_dim]
        w_std = float((w - w_avg).square().sum(1).mean().sqrt())
    w_opt = w_avg.clone().requires_grad_(True)
    noise = [torch.randn(1, *s, generator=rng).to(dev).requires_grad_(optimize_noise) for s in G.noise_shapes()]
    optimize_noise = optimize_noise and bool(noise)   # a model without noise inputs: w alone
    opt = torch.optim.Adam([w_opt, *noise] if optimize_noise else [w_opt], lr=lr, betas=(0.9, 0.999))
    loss_fn = ProjectionLoss(gen, target)
    frame_every = frame_every or max(1, steps // 40)

    def render(w: torch.Tensor) -> torch.Tensor:  # [1, w_dim] -> [1, C, R, R], unclamped (gradients)
        return full_size(G.synthesis(w[:, None].expand(-1, G.num_ws, -1), noise), gen.resolution).float()

    with torch.no_grad():
        first = render(w_opt)
        initial = float(loss_fn(first))
    frames, losses = [first.clamp(-1, 1).cpu()], []
    for step in range(steps):
        t = step / steps
        ramp = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / 0.25) * math.pi)   # cosine ramp-down, last 25%
        ramp *= min(1.0, t / 0.05)                                           # linear ramp-up, first 5%
        for group in opt.param_groups:
            group["lr"] = lr * ramp
        scale = w_std * w_noise * max(0.0, 1.0 - t / 0.75) ** 2
        images = render(w_opt + torch.randn(w_opt.shape, generator=rng).to(dev) * scale)
        dist = loss_fn(images)
        loss = dist + noise_reg * _noise_regularizer(noise) if optimize_noise else dist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if optimize_noise:
            with torch.no_grad():
                for n in noise:
                    n -= n.mean()
                    n *= n.square().mean().rsqrt()
        losses.append(float(dist.detach()))
        if callback is not None:
            callback(step + 1, losses[-1])
        if (step + 1) % frame_every == 0 and step + 1 < steps:
            frames.append(images.detach().clamp(-1, 1).cpu())
    with torch.no_grad():
        final_image = render(w_opt)
        final = float(loss_fn(final_image))
    image = final_image.clamp(-1, 1).cpu()
    frames.append(image)
    ws = w_opt.detach().float().cpu()[:, None].repeat(1, G.num_ws, 1)
    return Projection(ws, [n.detach().cpu() for n in noise], target.cpu(), image, losses, initial, final, frames,
                      loss_fn.kind, steps)


def check_out_dir(out: str | Path, force: bool) -> Path:
    """A projection's folder: new or empty, or --force (which replaces only the projection's own files)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GanforgeError(f"--out {out} is a file; projection writes a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GanforgeError(f"{out} exists and is not empty; choose another --out or pass --force (which "
                            f"replaces only {', '.join(PROJECTION_FILES)} there)")
    return out


def save_projection(gen: Generator, proj: Projection, out: str | Path, force: bool = False,
                    image_path: str | Path | None = None, meta: dict | None = None) -> dict[str, Path]:
    """Write DIR/reconstruction.png (target | reconstruction), DIR/latent.safetensors (`read_latent`) and
    DIR/progress.gif (target | the reconstruction as the optimisation went). Refuses a non-empty DIR unless
    `force`. `meta`: the pictures' origin (`Generator.provenance`)."""
    from safetensors.torch import save as st_save

    from .train.checkpoint import atomic_write_bytes
    from .viz import make_grid, save_gif, save_grid

    out = check_out_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name.split(".")[0]: out / name for name in PROJECTION_FILES}
    save_grid(torch.cat([proj.target, proj.image]), paths["reconstruction"], nrow=2, meta=meta)
    save_gif([make_grid(torch.cat([proj.target, f]), nrow=2) for f in proj.frames], paths["progress"], meta=meta)
    header = {"format": LATENT_FORMAT, "format_version": LATENT_VERSION, "model": gen.cfg.model,
              "generator": str(gen.source), "step": gen.step, "image": str(image_path) if image_path else None,
              "steps": proj.steps, "loss": proj.loss_kind, "initial_loss": proj.initial_loss,
              "final_loss": proj.final_loss, "num_ws": int(proj.ws.shape[1]), "w_dim": int(proj.ws.shape[2])}
    tensors = {"w": proj.ws.contiguous(), **{f"noise.{i}": n.contiguous() for i, n in enumerate(proj.noise)}}
    atomic_write_bytes(paths["latent"], st_save(tensors, metadata={"ganforge": json.dumps(header)}))
    return paths


def read_latent(path: str | Path) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    """A projection's latent.safetensors -> (ws [1, num_ws, w_dim], noise maps, what it records). The image
    again: `gen.synthesize(ws, noise)`."""
    from safetensors import safe_open

    from .registry import check_version

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("ganforge", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open, not a dict)
    except Exception as e:  # noqa: BLE001 (any unreadable file is the same user error)
        raise GanforgeError(f"{path} is not a readable latent file ({type(e).__name__})") from None
    if meta.get("format") != LATENT_FORMAT or "w" not in tensors:
        raise GanforgeError(f"{path} is not a ganforge latent (from `ganforge project`)")
    check_version(meta.get("format_version"), LATENT_VERSION, str(path))
    noise = [tensors[f"noise.{i}"] for i in range(sum(k.startswith("noise.") for k in tensors))]
    return tensors["w"], noise, meta
