"""The models a server holds: loaded once at start, each with its card and the controls it allows.

Everything a request may choose is checked here against the model (its capabilities, the server's limits)
before any work is done, and every check fails with a GanforgeError whose text is the message the client sees.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..registry import GanforgeError, get_model
from ..sampling import Generator, load


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; each bound keeps a request's time and memory small."""
    max_n: int = 64                      # images in one generate grid
    max_steps: int = 32                  # frames of an interpolation between two seeds
    max_mix: int = 6                     # row and column seeds of a style-mixing figure
    max_upload_bytes: int = 8 << 20      # an upload's bytes, enforced while reading
    max_upload_pixels: int = 4096 * 4096  # an upload's pixels, read from its header before it is decoded
    psi_range: tuple[float, float] = (-1.0, 2.0)        # truncation psi of a model with a mapping network
    threshold_range: tuple[float, float] = (0.05, 4.0)  # BigGAN's threshold on |z| of the others
    cache_bytes: int = 64 << 20          # PNGs kept for repeated requests


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
THING = {"fashion-mnist": "garment", "mnist": "digit", "emoji": "emoji", "edges2fashion": "garment",
         "gray2emoji": "emoji"}


def _paper(text: str) -> dict:
    """"Authors Year, Title, link" -> {"text": ..., "url": ...}."""
    m = re.search(r"https?://\S+", text)
    return {"text": text[: m.start()].rstrip(", ") if m else text, "url": m.group(0) if m else None}


def _run_metrics(ckpt: Path, step: int | None) -> dict:
    """The newest evaluation and health figures a run logged up to its checkpoint's step (metrics.jsonl beside
    checkpoints/), e.g. {"eval/fid": 12.3, "health/diversity_ratio": 0.95}; {} for an exported file."""
    log = ckpt.parent.parent / "metrics.jsonl" if ckpt.parent.name == "checkpoints" else None
    found: dict = {}
    if log is None or not log.is_file():
        return found
    try:
        with open(log) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if step is not None and row.get("step", 0) > step:
                    continue
                found.update({k: v for k, v in row.items()
                              if k.startswith(("eval/", "health/")) and isinstance(v, (int, float))})
    except OSError:
        return {}
    return found


@dataclass
class Served:
    """One model as served: its name in URLs, the loaded generator, its card."""
    name: str
    gen: Generator
    checkpoint: str                      # sha256 of the checkpoint file: part of every ETag
    card: dict = field(default_factory=dict)

    # -- the request's choices, checked

    def truncation(self, value: float | None, limits: Limits) -> float | None:
        if value is None:
            return None
        if self.gen.translates:
            raise GanforgeError(f"model {self.name!r} translates images: it has no truncation")
        lo, hi = limits.psi_range if self.gen.has_mapping else limits.threshold_range
        what = "psi" if self.gen.has_mapping else "threshold"
        if not math.isfinite(value) or not lo <= value <= hi:
            raise GanforgeError(f"truncation ({what}) must be a number in [{lo}, {hi}] for model {self.name!r}, "
                                f"got {value}")
        return value

    def label(self, value: str | None) -> int | None:
        if value is None or value == "":
            return None
        return self.gen.class_index(value)

    def latent(self, what: str) -> None:
        if self.gen.translates:
            raise GanforgeError(f"model {self.name!r} translates images: it makes no {what} from seeds "
                                f"(POST an image to /api/translate)")


def _card(name: str, gen: Generator, checkpoint: str, limits: Limits) -> dict:
    spec, cfg = get_model(gen.cfg.model), gen.cfg
    caps = gen.capabilities
    if gen.translates:
        truncation = None
    elif gen.has_mapping:
        truncation = {"kind": "psi", "min": limits.psi_range[0], "max": limits.psi_range[1], "default": 1.0,
                      "slider": [0.0, 1.0], "help": "psi: 1 = no truncation, 0 = the average image"}
    else:
        truncation = {"kind": "threshold", "min": limits.threshold_range[0], "max": limits.threshold_range[1],
                      "default": None, "slider": [0.25, 3.0],
                      "help": "BigGAN's threshold on |z|: lower = more typical, less varied"}
    data = str(cfg.data.name)
    return {
        "name": name,
        "model": cfg.model,
        "paper": _paper(spec.paper),
        "data": data,
        "thing": THING.get(data, "image"),
        "resolution": gen.resolution,
        "channels": gen.channels,
        "z_dim": gen.z_dim,
        "parameters": sum(p.numel() for p in gen.net.parameters()),
        "step": gen.step,
        "checkpoint": checkpoint[:16],
        "capabilities": {k: caps[k] for k in ("conditional", "has_mapping", "translates", "noise")},
        "classes": list(gen.classes),
        "truncation": truncation,
        "mixing": gen.has_mapping,
        "metrics": _run_metrics(gen.source, gen.step),
        "limits": {"max_n": limits.max_n, "max_steps": limits.max_steps, "max_mix": limits.max_mix,
                   "max_upload_bytes": limits.max_upload_bytes},
    }


def _split(arg: str) -> tuple[str | None, str]:
    """"NAME=PATH" -> (NAME, PATH); a plain path (or one that exists as given) -> (None, PATH)."""
    head, sep, tail = arg.partition("=")
    if sep and NAME.match(head) and not Path(arg).exists():
        return head, tail
    return None, arg


def _auto_name(path: Path) -> str:
    p = path.parent.parent if path.parent.name == "checkpoints" else path
    raw = p.name if p.is_dir() else p.stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "model"
    return name[:64]


def load_models(args: list[str | Path], device: str = "auto", limits: Limits = Limits()) -> dict[str, Served]:
    """Load each RUN_OR_CKPT (or NAME=RUN_OR_CKPT) once, in the order given; names are unique: the ones given
    are kept, a run named after its folder takes a suffix where that name is taken."""
    if not args:
        raise GanforgeError("serve needs at least one run directory, checkpoint or exported model")
    split = [_split(str(arg)) for arg in args]
    given = [name for name, _ in split if name is not None]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise GanforgeError(f"two models are named {twice[0]!r}; give each its own NAME=PATH")
    served: dict[str, Served] = {}
    for name, path in split:
        gen = load(path, device=device)
        if name is None:
            base = name = _auto_name(Path(path))
            k = 2
            while name in served or name in given:
                name, k = f"{base}-{k}", k + 1
        served[name] = Served(name, gen, gen.sha256, _card(name, gen, gen.sha256, limits))
    return served
