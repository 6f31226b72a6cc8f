"""Inference, apart from training: load a generator from a checkpoint or exported file and sample it.

Needs no optimiser, dataset or run directory beyond the checkpoint (diffusers' pipelines rule). The CLI,
the Python API and (later) the web page all go through here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import config as config_mod
from .registry import GanforgeError, get_model
from .train.checkpoint import read_header, read_tensors, resolve_checkpoint


class Generator:
    """A trained generator, ready to sample: `ganforge.load(path).sample(16, seed=0)`."""

    def __init__(self, net: torch.nn.Module, cfg, channels: int, source: Path, step: int | None):
        self.net, self.cfg, self.channels, self.source, self.step = net, cfg, channels, source, step
        self.z_dim: int = net.z_dim
        self.resolution: int = cfg.data.resolution

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "Generator":
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        return (f"Generator({self.cfg.model}, {self.channels}x{self.resolution}x{self.resolution}, "
                f"z_dim={self.z_dim}, step={self.step}, from {self.source})")

    def latents(self, n: int, seed: int | None = 0, truncation: float | None = None) -> torch.Tensor:
        """n latent vectors from N(0, I). `truncation` T resamples every coordinate with |z| > T (the
        truncation trick of BigGAN, Brock et al. 2019): less variety, more typical images."""
        if n < 1:
            raise GanforgeError(f"need at least one sample, got n={n}")
        g = torch.Generator()
        if seed is None:
            g.seed()
        elif not 0 <= seed < 2**63:
            raise GanforgeError(f"seed must be in [0, 2**63), got {seed}")
        else:
            g.manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g)
        if truncation is not None:
            if not truncation > 0:
                raise GanforgeError(f"truncation must be > 0, got {truncation}")
            for _ in range(1000):
                bad = z.abs() > truncation
                if not bad.any():
                    break
                z[bad] = torch.randn(int(bad.sum()), generator=g)
            z.clamp_(-truncation, truncation)
        return z

    @torch.no_grad()
    def generate(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Latents [N, z_dim] -> images [N, C, H, W] in [-1, 1] (float32, on the CPU)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise GanforgeError(f"latents must have shape [N, {self.z_dim}], got {list(z.shape)}")
        out = [self.net(chunk.to(self.device)).float().cpu() for chunk in z.split(batch_size)]
        return torch.cat(out)

    def sample(self, n: int, seed: int | None = 0, truncation: float | None = None) -> torch.Tensor:
        return self.generate(self.latents(n, seed, truncation))


def load(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> Generator:
    """Load the generator of a run directory (its newest checkpoint), a checkpoint, or an exported model.

    Reads only the generator's weights (G_ema where the run kept one), through safetensors: no code runs.
    """
    from .train.loop import pick_device

    device = pick_device(str(device))
    ckpt = resolve_checkpoint(path)
    header = read_header(ckpt)
    cfg = config_mod.from_dict(header["config"])
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
        raise GanforgeError(f"{ckpt}: weights do not fit the {cfg.model} architecture in its config: "
                            f"{str(e).splitlines()[0]}") from None
    G.eval().requires_grad_(False).to(device)
    return Generator(G, cfg, channels, ckpt, header.get("step"))


def export(run_or_ckpt: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write one self-describing safetensors file with the sampling generator and its config."""
    import json

    from safetensors.torch import save as st_save

    from .train.checkpoint import FORMAT_VERSION, atomic_write_bytes

    out = Path(out)
    if out.exists() and not overwrite:
        raise GanforgeError(f"{out} exists; choose another --out or pass --force")
    gen = load(run_or_ckpt)
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in gen.net.state_dict().items()}
    header = {"format": "ganforge-model", "format_version": FORMAT_VERSION, "step": gen.step, "nets": ["G"],
              "config": gen.cfg.to_dict(), "data_channels": gen.channels}
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
