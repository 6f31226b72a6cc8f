"""Inference, apart from training: load a generator from a checkpoint or exported file and sample it.

Needs no optimiser, dataset or run directory beyond the checkpoint (diffusers' pipelines rule). The CLI,
the Python API and (later) the web page all go through here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import config as config_mod
from .recipes import RECIPES, capabilities, chunks, full_size, to_device
from .registry import GanforgeError, get_model
from .train.checkpoint import read_header, read_tensors, resolve_checkpoint


class Generator:
    """A trained generator, ready to sample: `ganforge.load(path).sample(16, seed=0)`.

    Every random input G takes (z, labels, per-pixel noise) comes from the recipe's `inputs`, drawn from one
    seeded generator: the same seed gives the same image. What the model can do (`conditional`,
    `has_mapping`, `translates`) is read from the network, never from the family's name.
    """

    def __init__(self, net: torch.nn.Module, recipe, cfg, channels: int, source: Path, step: int | None,
                 classes: tuple[str, ...] = ()):
        self.net, self.recipe, self.cfg, self.channels, self.source, self.step = net, recipe, cfg, channels, source, step
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
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "Generator":
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        cond = f", {self.num_classes} classes" if self.conditional else ""
        return (f"Generator({self.cfg.model}, {self.channels}x{self.resolution}x{self.resolution}, "
                f"z_dim={self.z_dim}{cond}, step={self.step}, from {self.source})")

    def class_index(self, c: int | str) -> int:
        """A class given by index or by name -> its index; a clear error for an unconditional model."""
        if not self.conditional:
            raise GanforgeError(f"this {self.cfg.model} model is unconditional: it takes no class (train one with "
                                f"--class-conditional on data with classes)")
        if isinstance(c, str):
            if c in self.classes:  # a name first: class folders may be called "1", "3", "7"
                return self.classes.index(c)
            if not c.lstrip("-").isdigit():
                raise GanforgeError(f"unknown class {c!r}; the model's classes: {', '.join(self.classes)}")
        i = int(c)
        if not 0 <= i < self.num_classes:
            raise GanforgeError(f"class {i} is out of range: the model has {self.num_classes} classes "
                                f"(0..{self.num_classes - 1}: {', '.join(self.classes)})")
        return i

    def _generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator()
        if seed is None:
            g.seed()
        elif not 0 <= seed < 2**63:
            raise GanforgeError(f"seed must be in [0, 2**63), got {seed}")
        else:
            g.manual_seed(seed)
        return g

    def inputs(self, n: int, seed: int | None = 0, truncation: float | None = None,
               labels: int | str | list | torch.Tensor | None = None) -> dict:
        """Everything G takes for n samples, from one seed. `truncation` T resamples every coordinate of z with
        |z| > T (BigGAN's truncation trick): less variety, more typical images. `labels`: one class (index or
        name) for all, or one per sample; a conditional model draws them uniformly when none are given."""
        if n < 1:
            raise GanforgeError(f"need at least one sample, got n={n}")
        if truncation is not None and not truncation > 0:
            raise GanforgeError(f"truncation must be > 0, got {truncation}")
        if labels is not None:
            items = labels.tolist() if torch.is_tensor(labels) else labels
            items = items if isinstance(items, (list, tuple)) else [items]
            if len(items) not in (1, n):
                raise GanforgeError(f"give one label or one per sample ({n}), got {len(items)}")
            labels = torch.tensor([self.class_index(c) for c in items], dtype=torch.int64)
        return self.recipe.inputs(n, self._generator(seed), labels=labels, truncation=truncation)

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
    return Generator(G, recipe, cfg, channels, ckpt, header.get("step"), tuple(header.get("classes") or ()))


def export(run_or_ckpt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write one self-describing safetensors file with the sampling generator and its config."""
    import json

    from safetensors.torch import save as st_save

    from .train.checkpoint import FORMAT_VERSION, atomic_write_bytes

    out = Path(out)
    if out.exists() and not overwrite:
        raise GanforgeError(f"{out} exists; choose another --out or pass --force")
    gen = load(run_or_ckpt, device="cpu")
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in gen.net.state_dict().items()}
    header = {"format": "ganforge-model", "format_version": FORMAT_VERSION, "step": gen.step, "nets": ["G"],
              "config": gen.cfg.to_dict(), "data_channels": gen.channels, "classes": list(gen.classes)}
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
    t = t.view(-1, 1)
    return a + (b - a) * t


def interpolation_latents(gen: Generator, seeds: list[int], steps: int, method: str = "slerp") -> torch.Tensor:
    """Latents walking through the seeds' latents in order, `steps` per segment: [(len(seeds)-1)*steps+1, z]."""
    if len(seeds) < 2:
        raise GanforgeError(f"interpolation needs at least two seeds, got {seeds}")
    if steps < 2:
        raise GanforgeError(f"interpolation needs --steps >= 2, got {steps}")
    fn = {"slerp": slerp, "lerp": lerp}.get(method)
    if fn is None:
        raise GanforgeError(f"unknown interpolation {method!r}; use slerp or lerp")
    ends = [gen.latents(1, seed=s)[0] for s in seeds]
    t = torch.linspace(0, 1, steps)
    parts = []
    for i, (a, b) in enumerate(zip(ends[:-1], ends[1:])):
        seg = fn(a[None].expand(steps, -1), b[None].expand(steps, -1), t)
        parts.append(seg if i == 0 else seg[1:])
    return torch.cat(parts)


def latent_arithmetic(gen: Generator, groups: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """DCGAN section 6.3: average the z of each group of examples (the paper uses three per concept), add
    the averages with `weights` (e.g. smiling woman - neutral woman + neutral man: [1, -1, 1]) and decode.
    Returns the image [1, C, H, W] of the combined latent."""
    if len(groups) != len(weights) or not groups:
        raise GanforgeError("latent arithmetic needs one weight per group of latents")
    means = [g.reshape(-1, gen.z_dim).mean(0) for g in groups]
    z = sum(w * m for w, m in zip(weights, means))
    return gen.generate(z[None])
