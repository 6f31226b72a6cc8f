"""Inference, apart from training: load a generator from a checkpoint or exported file and sample it.

Needs no optimiser, dataset or run directory beyond the checkpoint (diffusers' pipelines rule). The CLI,
the Python API and (later) the web page all go through here.
"""
from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

import torch

from . import config as config_mod
from .recipes import RECIPES, capabilities, chunks, full_size, to_device
from .registry import GanforgeError, get_model
from .train.checkpoint import read_header, read_tensors, resolve_checkpoint


@contextlib.contextmanager
def seeded_rng(device: torch.device, seed: int):
    """Run a block with the torch RNG of `device` (the CPU's, or that CUDA device's) seeded with `seed`, and
    every RNG as it was afterwards: what a network draws as it runs (pix2pix's test-time dropout) is then fixed
    by the seed, and the caller's random streams (a training run's) are untouched."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        yield


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise GanforgeError(f"seed must be in [0, 2**63), got {seed}")
    return seed


class Generator:
    """A trained generator, ready to sample: `ganforge.load(path).sample(16, seed=0)`.

    Every random input G takes (z, labels, per-pixel noise) comes from the recipe's `inputs`, drawn from one
    seeded generator: the same seed gives the same image. What the model can do (`conditional`,
    `has_mapping`, `translates`) is read from the network, never from the family's name.

    Models with a mapping network (`has_mapping`: StyleGAN, StyleGAN2) also work in W, the intermediate latent
    space: `ws(...)` maps z to the per-layer styles and `synthesize(ws, noise)` draws them; the style tools
    (ganforge.style_tools) and W-space interpolation are built on these two.
    """

    def __init__(self, net: torch.nn.Module, recipe, cfg, channels: int, source: Path, step: int | None,
                 classes: tuple[str, ...] = (), origin: str | Path | None = None, sha256: str | None = None):
        self.net, self.recipe, self.cfg, self.channels, self.source, self.step = net, recipe, cfg, channels, source, step
        self.origin = Path(origin) if origin is not None else source  # what the user named (a run, a file)
        self.sha256 = sha256  # of the checkpoint file as it was loaded: what every image's provenance names
        self.z_dim: int = getattr(net, "z_dim", 0)  # 0: no latent (an image-to-image translator)
        self.resolution: int = cfg.data.resolution
        self.capabilities = capabilities(net)
        self.num_classes: int = self.capabilities["num_classes"]
        # the class names of what it was trained on, where it generates by class
        self.classes = (tuple(classes) or tuple(str(i) for i in range(self.num_classes))) if self.num_classes else ()

    @property
    def conditional(self) -> bool:
        return self.capabilities["conditional"]

    @property
    def translates(self) -> bool:
        """Whether G maps an input image to an output image (pix2pix) rather than a latent to an image."""
        return self.capabilities["translates"]

    @property
    def has_mapping(self) -> bool:
        """Whether G maps z to an intermediate latent w first (StyleGAN's mapping network)."""
        return self.capabilities["has_mapping"]

    def require_mapping(self, tool: str) -> None:
        """A clear error where a W-space tool is asked of a model without a mapping network."""
        if not self.has_mapping:
            raise GanforgeError(f"{tool} needs a model with a mapping network ({', '.join(mapping_models())}); "
                                f"{self.origin} is a {self.cfg.model}")

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "Generator":
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        cond = f", {self.num_classes} classes" if self.conditional else ""
        return (f"Generator({self.cfg.model}, {self.channels}x{self.resolution}x{self.resolution}, "
                f"z_dim={self.z_dim}{cond}, step={self.step}, from {self.source})")

    def provenance(self, seed: int | None = None, **fields) -> dict[str, str]:
        """The origin fields for an image of this model (ganforge.provenance): the family, the checkpoint's sha256,
        its training step, and what else fixes the image (seed, truncation, class, ...)."""
        from .provenance import file_hash, provenance

        if self.sha256 is None:  # a Generator built by hand: its file now
            self.sha256 = file_hash(self.source)
        return provenance(self.cfg.model, self.sha256, step=self.step, seed=seed, **fields)

    def class_index(self, c: int | str) -> int:
        """A class given by index or by name -> its index; a clear error for an unconditional model."""
        if not self.conditional:
            raise GanforgeError(f"this {self.cfg.model} model is unconditional: it takes no class (train one with "
                                f"--class-conditional on data with classes)")
        if isinstance(c, str):
            if c in self.classes:  # a name first: class folders may be called "1", "3", "7"
                return self.classes.index(c)
            if not (c.isascii() and c.lstrip("-").isdigit()) or len(c) > 18:  # "²" is a digit; 5000 digits no int
                raise GanforgeError(f"unknown class {c if len(c) <= 40 else c[:40] + '...'!r}; the model's classes: {', '.join(self.classes)}")
        i = int(c)
        if not 0 <= i < self.num_classes:
            raise GanforgeError(f"class {i} is out of range: the model has {self.num_classes} classes "
                                f"(0..{self.num_classes - 1}: {', '.join(self.classes)})")
        return i

    def _generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(check_seed(seed))
        return g

    def inputs(self, n: int, seed: int | None = 0, truncation: float | None = None,
               labels: int | str | list | torch.Tensor | None = None) -> dict:
        """Everything G takes for n samples, from one seed. `labels`: one class (index or name) for all, or one
        per sample; a conditional model draws them uniformly when none are given.

        `truncation` trades variety for typical images, in the way the model allows:
        - with a mapping network (StyleGAN, StyleGAN2) it is psi, toward the tracked average w:
          w' = w_avg + psi (w - w_avg); 1 is no truncation, 0 gives every z the average image, any finite
          value is allowed (negative ones give the "anti-faces" of StyleGAN's figure 8); z itself is untouched;
        - otherwise it is BigGAN's threshold T > 0 on z: every coordinate with |z| > T is redrawn."""
        if n < 1:
            raise GanforgeError(f"need at least one sample, got n={n}")
        if truncation is not None:
            if self.has_mapping and not math.isfinite(truncation):
                raise GanforgeError(f"truncation psi must be a finite number (1: none, 0: the average w), got "
                                    f"{truncation}")
            if not self.has_mapping and not truncation > 0:
                raise GanforgeError(f"truncation (for a {self.cfg.model}: BigGAN's threshold on |z|) must be > 0, "
                                    f"got {truncation}")
        if labels is not None:
            items = labels.tolist() if torch.is_tensor(labels) else labels
            items = items if isinstance(items, (list, tuple)) else [items]
            if len(items) not in (1, n):
                raise GanforgeError(f"give one label or one per sample ({n}), got {len(items)}")
            labels = torch.tensor([self.class_index(c) for c in items], dtype=torch.int64)
        return self.recipe.inputs(n, self._generator(seed), labels=labels, truncation=truncation)

    def inputs_for_seeds(self, seeds: list[int], truncation: float | None = None, labels=None) -> dict:
        """G's inputs for one sample per seed, each exactly `inputs(1, seed, ...)`: a seed's image is the same
        whatever other seeds come with it (the tools' grids show the seeds' own samples)."""
        if not seeds:
            raise GanforgeError("give at least one seed")
        return _cat_inputs([self.inputs(1, s, truncation, labels) for s in seeds])

    def latents(self, n: int, seed: int | None = 0, truncation: float | None = None) -> torch.Tensor:
        """n latent vectors z [n, z_dim] from N(0, I), the same as `inputs(...)["z"]` for that seed."""
        return self.inputs(n, seed, truncation)["z"]

    @torch.no_grad()
    def generate(self, inputs: dict | torch.Tensor, labels=None, batch_size: int = 256) -> torch.Tensor:
        """G's inputs (a dict from `inputs`, or latents z [N, z_dim]) -> images [N, C, H, W] in [-1, 1]
        (float32, on the CPU). With bare latents, a conditional model needs `labels`."""
        if torch.is_tensor(inputs):
            z = inputs
            if z.ndim != 2 or z.shape[1] != self.z_dim:
                raise GanforgeError(f"latents must have shape [N, {self.z_dim}], got {list(z.shape)}")
            if self.conditional and labels is None:
                raise GanforgeError(f"this model is class-conditional: pass labels (one of {self.num_classes} "
                                    f"classes) with the latents")
            extra = self.inputs(len(z), 0, labels=labels) if (self.conditional or self.capabilities["noise"]) else {}
            inputs = {**extra, "z": z}
        out = [full_size(self.net(**to_device(part, self.device)).float().cpu(), self.resolution)
               for part in chunks(inputs, batch_size)]
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = 0, truncation: float | None = None, labels=None) -> torch.Tensor:
        return self.generate(self.inputs(n, seed, truncation, labels))

    # -- image-to-image translation (models that `translates`)

    @torch.no_grad()
    def translate(self, images: torch.Tensor, seed: int | None = 0, batch_size: int = 64) -> torch.Tensor:
        """Input images [N, C, H, W] in [-1, 1] (any size; grey or colour) -> the model's translations, [N, C', H,
        W] in [-1, 1] at the inputs' size (float32, on the CPU). Inputs of another size are resized to the
        model's resolution (antialiased) and the outputs back; grey inputs of a colour model are repeated,
        colour inputs of a grey model averaged. `seed` fixes the test-time dropout (the model's only noise;
        None: a fresh draw); the caller's random streams are untouched."""
        if not self.translates:
            raise GanforgeError(f"{self.origin} is a {self.cfg.model}: it generates from latents and translates "
                                f"no images (use sample); translation needs a model such as pix2pix")
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
            raise GanforgeError(f"images must have shape [N, 1 or 3, H, W], got {list(x.shape)}")
        x = x.float()
        size = tuple(x.shape[-2:])
        r = self.resolution
        if size != (r, r):
            x = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        seed = self._generator(seed).initial_seed()  # checked, or drawn afresh for None
        with seeded_rng(self.device, seed):
            out = torch.cat([self.net(source=part.to(self.device)).float().cpu() for part in x.split(batch_size)])
        if size != (r, r):
            out = torch.nn.functional.interpolate(out, size=size, mode="bilinear", antialias=True, align_corners=False)
        return out.clamp(-1, 1)

    # -- W space (models with a mapping network)

    @torch.no_grad()
    def ws(self, inputs: dict | torch.Tensor, truncation: float | None = None,
           batch_size: int = 1024) -> torch.Tensor:
        """Latents z [N, z_dim] (or G's inputs from `inputs`) -> the per-layer styles' w [N, num_ws, w_dim]
        (float32, on the CPU), truncated by psi = `truncation` (else the inputs' own psi, if any)."""
        self.require_mapping("W space")
        z = inputs if torch.is_tensor(inputs) else inputs["z"]
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise GanforgeError(f"latents must have shape [N, {self.z_dim}], got {list(z.shape)}")
        psi = truncation if truncation is not None or torch.is_tensor(inputs) else inputs.get("psi")
        if psi is not None and not math.isfinite(psi):
            raise GanforgeError(f"truncation psi must be a finite number, got {psi}")
        return torch.cat([self.net.ws(part.to(self.device), psi=psi).float().cpu() for part in z.split(batch_size)])

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None,
                   batch_size: int = 256) -> torch.Tensor:
        """Styles ws [N, num_ws, w_dim] (or one w [N, w_dim] for every layer) -> images [N, C, H, W] in [-1, 1]
        at the run's resolution (float32, on the CPU), as `generate` makes them.

        `noise`: one tensor [N or 1, 1, R, R] per noise input (`inputs(...)["noise"]`; a batch of 1 is used for
        every image), or None for no noise at all (deterministic images)."""
        self.require_mapping("synthesis from W")
        G = self.net
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, G.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise GanforgeError(f"ws must have shape [N, {G.num_ws}, {G.w_dim}] (or [N, {G.w_dim}]), got "
                                f"{list(ws.shape)}")
        n = len(ws)
        if noise is not None:
            shapes = G.noise_shapes()
            if len(noise) != len(shapes):
                raise GanforgeError(f"noise must hold {len(shapes)} tensors (one per noise input), got {len(noise)}")
            noise = [t.expand(n, *s) if len(t) == 1 else t for t, s in zip(noise, shapes)]
        out = []
        for start in range(0, n, batch_size):
            part_noise = None if noise is None else [t[start: start + batch_size].to(self.device) for t in noise]
            img = G.synthesis(ws[start: start + batch_size].to(self.device), part_noise)
            out.append(full_size(img.clamp(-1, 1).float().cpu(), self.resolution))  # clamped as G's eval forward
        return torch.cat(out)


def _cat_inputs(parts: list[dict]) -> dict:
    """Inputs dicts of the same keys -> one, sample by sample (tensors and lists of per-sample tensors)."""
    out = {}
    for k, v in parts[0].items():
        if torch.is_tensor(v) and v.ndim > 0:
            out[k] = torch.cat([p[k] for p in parts])
        elif isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]):
            out[k] = [torch.cat(ts) for ts in zip(*(p[k] for p in parts))]
        else:
            out[k] = v
    return out


@functools.cache
def mapping_models() -> tuple[str, ...]:
    """The registered families whose generator has a mapping network, found by building each one on the meta
    device (no memory, no time) and reading its capabilities: a new family is listed the moment it has one."""
    from .registry import list_models

    def has_mapping(name: str) -> bool:
        spec = get_model(name)
        try:
            with torch.device("meta"):
                G, _ = spec.build(spec.config_cls(), 64, 3)
        except Exception:  # noqa: BLE001 (a family that cannot build this way is simply not listed)
            return False
        return capabilities(G)["has_mapping"]

    return tuple(name for name in list_models() if has_mapping(name))


def load(path: str | Path, device: str | torch.device = "auto", use_ema: bool = True) -> Generator:
    """Load the generator of a run directory (its newest checkpoint), a checkpoint, or an exported model.

    Reads only the generator's weights (G_ema where the run kept one), through safetensors: no code runs.
    Files of every format this version knows (1: ganforge 0.1; 2: now) load; others fail naming their version.
    """
    from .train.device import pick_device, uses_conv

    device = pick_device(str(device))
    ckpt = resolve_checkpoint(path)
    header = read_header(ckpt)
    try:
        cfg = config_mod.from_dict(header["config"])
    except GanforgeError as e:
        raise GanforgeError(f"{ckpt} (format {header.get('format_version')}): {e}") from None
    spec = get_model(cfg.model)
    channels = header["data_channels"]
    G, _ = spec.build(cfg.arch, cfg.data.resolution, channels)
    names = header.get("nets", [])
    which = "G_ema" if use_ema and "G_ema" in names else "G"
    if which not in names:
        raise GanforgeError(f"{ckpt} holds no generator weights (has: {', '.join(names) or 'nothing'})")
    state = read_tensors(ckpt, which)
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise GanforgeError(f"{ckpt} (format {header.get('format_version')}): weights do not fit the {cfg.model} "
                            f"architecture in its config: {str(e).splitlines()[0]}") from None
    G.eval().requires_grad_(False).to(device)
    if cfg.train.channels_last and uses_conv(G):  # the layout it trained in: the same samples, to the bit
        G.to(memory_format=torch.channels_last)
    recipe = RECIPES[spec.recipe](G, None, cfg)
    from .provenance import file_hash

    return Generator(G, recipe, cfg, channels, ckpt, header.get("step"), tuple(header.get("classes") or ()),
                     origin=path, sha256=file_hash(ckpt))


def export(run_or_ckpt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write one self-describing safetensors file with the sampling generator and its config."""
    import json

    from safetensors.torch import save as st_save

    from .train.checkpoint import FORMAT_VERSION, atomic_write_bytes, checksums

    out = Path(out)
    if out.exists() and not overwrite:
        raise GanforgeError(f"{out} exists; choose another --out or pass --force")
    gen = load(run_or_ckpt, device="cpu")
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in gen.net.state_dict().items()}
    header = {"format": "ganforge-model", "format_version": FORMAT_VERSION, "step": gen.step, "nets": ["G"],
              "config": gen.cfg.to_dict(), "data_channels": gen.channels, "classes": list(gen.classes),
              "checksums": checksums(tensors)}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, st_save(tensors, metadata={"ganforge": json.dumps(header)}))
    return out


# ------------------------------------------------------------------------------------------ latent walks

def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016, "Sampling Generative Networks"): stays on the shell where
    Gaussian latents live, unlike a straight line through the low-density centre."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t.view(-1, 1)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The straight line; torch.lerp gives both ends exactly (a + (b - a) t can miss b by a rounding)."""
    return torch.lerp(a, b, t.view(-1, 1).to(a.dtype))


INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}


def _walk(ends: list[torch.Tensor], steps: int, method: str) -> torch.Tensor:
    """Points through `ends` in order, `steps` per segment counting both its ends, segments sharing their ends:
    [(k-1)*(steps-1)+1, ...]."""
    fn = INTERPOLATIONS.get(method)
    if fn is None:
        raise GanforgeError(f"unknown interpolation {method!r}; use slerp or lerp")
    shape = ends[0].shape
    flat = [e.reshape(1, -1) for e in ends]
    t = torch.linspace(0, 1, steps)
    parts = []
    for i, (a, b) in enumerate(zip(flat[:-1], flat[1:])):
        seg = fn(a.expand(steps, -1), b.expand(steps, -1), t)
        parts.append(seg if i == 0 else seg[1:])
    return torch.cat(parts).reshape(-1, *shape)


def _check_walk(seeds: list[int], steps: int) -> None:
    if len(seeds) < 2:
        raise GanforgeError(f"interpolation needs at least two seeds, got {seeds}")
    if steps < 2:
        raise GanforgeError(f"interpolation needs --steps >= 2, got {steps}")


def interpolation_latents(gen: Generator, seeds: list[int], steps: int, method: str = "slerp",
                          truncation: float | None = None) -> torch.Tensor:
    """Latents walking through the seeds' latents in order, `steps` per segment (both ends counted):
    [(len(seeds)-1)*(steps-1)+1, z_dim].
    `truncation` as in `Generator.inputs` (for a mapping model, psi does not touch z: see `interpolate`)."""
    _check_walk(seeds, steps)
    return _walk([gen.latents(1, seed=s, truncation=truncation)[0] for s in seeds], steps, method)


def interpolation_ws(gen: Generator, seeds: list[int], steps: int, method: str = "lerp",
                     truncation: float | None = None) -> torch.Tensor:
    """Styles walking through the seeds' w in order (W space; StyleGAN section 4 finds it less entangled than
    Z, so a straight line in it changes the image more evenly): [(len(seeds)-1)*(steps-1)+1, num_ws, w_dim].
    Linear by default, as the paper's perceptual path length in W; `truncation` is psi."""
    gen.require_mapping("interpolation in W (--space w)")
    _check_walk(seeds, steps)
    ends = gen.ws(gen.inputs_for_seeds(seeds, truncation))
    return _walk(list(ends), steps, method)


def interpolate(gen: Generator, seeds: list[int], steps: int, method: str | None = None, space: str | None = None,
                truncation: float | None = None, labels=None, noise: bool = True) -> torch.Tensor:
    """The images of a walk through the seeds' latents: [(len(seeds)-1)*(steps-1)+1, C, H, W] in [-1, 1].

    `space`: "z" (the input latents) or "w" (a mapping model's intermediate latents; its default there, "z"
    elsewhere). `method`: slerp or lerp (default: slerp in z, whose Gaussian latents live near a sphere; lerp
    in w). For a model with per-pixel noise, every frame takes the first seed's noise (or none with
    `noise=False`), so the walk changes only with the latent and the first frame is that seed's sample.
    """
    space = space or ("w" if gen.has_mapping else "z")
    if space not in ("z", "w"):
        raise GanforgeError(f"unknown latent space {space!r}; use z or w")
    method = method or ("slerp" if space == "z" else "lerp")
    if space == "z" and not gen.has_mapping:
        return gen.generate(interpolation_latents(gen, seeds, steps, method, truncation), labels=labels)
    if labels is not None:
        gen.class_index(labels)  # the clear error: the style models take no class
    if space == "w":
        ws = interpolation_ws(gen, seeds, steps, method, truncation)
    else:
        ws = gen.ws(interpolation_latents(gen, seeds, steps, method), truncation=truncation)
    fixed = gen.inputs(1, seeds[0])["noise"] if noise else None
    return gen.synthesize(ws, fixed)


def latent_arithmetic(gen: Generator, groups: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """DCGAN section 6.3: average the z of each group of examples (the paper uses three per concept), add
    the averages with `weights` (e.g. smiling woman - neutral woman + neutral man: [1, -1, 1]) and decode.
    Returns the image [1, C, H, W] of the combined latent."""
    if len(groups) != len(weights) or not groups:
        raise GanforgeError("latent arithmetic needs one weight per group of latents")
    means = [g.reshape(-1, gen.z_dim).mean(0) for g in groups]
    z = sum(w * m for w, m in zip(weights, means))
    return gen.generate(z[None])
