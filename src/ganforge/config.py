"""Typed run configuration: dataclasses, YAML presets and `--set key=value` overrides.

A resolved config is layered: dataclass defaults <- the model's paper defaults (registry) <- the preset
`src/ganforge/presets/<model>_<data>.yaml` if one exists (the mechanism is tested; no preset ships yet: none
has been measured to beat the defaults) <- `--config FILE` <- command-line flags <- `--set`.
An unknown key anywhere is an error that names it; values are checked against the field's type.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .registry import GanforgeError, check_version, get_model

PRESETS = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a dataset name (`ganforge data list`) or a folder path
    resolution: int = 0          # 0 = the model's paper resolution (28 for gan, 32 for dcgan)
    channels: int = 0            # 0 = as the data is (grey stays grey); 1 or 3 to force
    stream: str = "auto"         # folders: auto (streamed from disk when larger than memory_mb), always, never
    memory_mb: float = 4096      # in-memory budget for a folder and its cached resolutions
    workers: int = -1            # DataLoader workers for streamed folders (-1 = min(4, CPU cores))
    direction: str = "AtoB"      # paired data: AtoB translates A (left half / A/) into B; BtoA the reverse


@dataclass
class TrainConfig:
    steps: int = 5000            # generator updates; 0 = no step limit (with --minutes); --minutes may end sooner
    minutes: float = 0.0         # wall-time bound (0 = none); the run still ends with a checkpoint and samples
    batch_size: int = 64
    seed: int = 0
    loss: str = "nonsaturating"  # see ganforge.losses.LOSSES
    optimizer: str = "adam"      # adam | sgd
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's; for sgd, betas[0] is the (starting) momentum
    lr_decay: float = 1.0        # sgd: the learning rate is divided by this every step ...
    lr_min: float = 0.0          # ... down to this (the 2014 GAN: 1.000004 and 1e-6)
    momentum_final: float = 0.0  # sgd: momentum grows linearly from betas[0] to this (0 = constant) ...
    momentum_ramp_kimg: float = 0.0  # ... over this many thousand images
    ema: bool = True             # keep an exponential moving average of G (Karras et al. 2018) for sampling
    ema_kimg: float = 10.0       # EMA half-life in thousands of images (StyleGAN2-ADA's default)
    ema_rampup: float = 0.05     # early on, half-life <= this fraction of images seen, so the EMA is not stale
    precision: str = "auto"      # auto (bf16 autocast where the CPU/GPU supports it fast), bf16, fp32
    channels_last: bool = True   # NHWC convolutions: faster with oneDNN and cuDNN
    compile: str = "auto"        # torch.compile: auto (only where measured to pay: train/compile.py), off, G, D,
                                 # all (or on)
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    deterministic: bool = False  # GPU: deterministic cuDNN kernels, so resume is bit-exact there too (slower);
                                 # CPU runs are deterministic anyway
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3    # newest K are kept; older ones are deleted only after a newer one is complete
    sample_every: int = 250      # fixed-latent grid for samples/ and progress.gif (0 = only at the end)
    log_every: int = 50          # metrics.jsonl, TensorBoard and the progress bar's losses
    sample_grid: int = 64        # images per progress grid
    eval_every: int = 0          # FID/KID every N steps into metrics.jsonl and TensorBoard, keeping a `best`
                                 # checkpoint by FID (0 = off)
    eval_n: int = 2000           # samples (and reference images) per in-training evaluation
    eval_metrics: str = "fid,kid"
    eval_extractor: str = ""     # "" = the domain classifier where the data has one, else inception-v3-compat
    diverge_retries: int = 3     # a non-finite loss or weight: roll back to the last good checkpoint with lower
                                 # learning rates, at most this many times, then stop (0: stop at once)
    diverge_lr_factor: float = 0.5  # each rollback multiplies the learning rates by this
    sync_batchnorm: bool = False    # torchrun: BatchNorm statistics over the global batch (else each rank's own)
    dist_timeout_s: float = 1800.0  # torchrun: a collective waiting longer (a rank died or hangs) is an error;
                                    # above rank 0's longest evaluation, which the others wait for


CONFIG_VERSION = 2  # 2: the recipe section, data.stream/memory_mb/workers, arch.num_classes (dcgan: kernel_size)


@dataclass
class RunConfig:
    model: str = "dcgan"
    arch: Any = None             # the family's config dataclass (see `ganforge models`)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: Any = None           # the recipe's config dataclass (how the family trains: augmentation, ...)
    version: int = CONFIG_VERSION  # config schema version, checked on load

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"]["betas"] = list(d["train"]["betas"])
        return d


# ------------------------------------------------------------------------------------- typed overrides

def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise GanforgeError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise GanforgeError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise GanforgeError(f"{key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise GanforgeError(f"{key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, bool) and key == "train.compile":  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise GanforgeError(f"{key} must be a string, got {value!r}")
    return value


def apply_dict(obj: Any, values: dict, prefix: str = "") -> None:
    """Set dataclass fields of `obj` from a nested dict; unknown keys and wrong types are errors."""
    if not isinstance(values, dict):
        raise GanforgeError(f"{prefix or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise GanforgeError(f"unknown config key {key!r}; {prefix.rstrip('.') or 'the config'} has: "
                                f"{', '.join(sorted(names))}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            apply_dict(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def parse_set(items: list[str]) -> dict:
    """['train.lr_g=1e-4', 'arch.base_channels=8'] -> nested dict with YAML-typed values."""
    flat: dict = {}
    for item in items:
        if "=" not in item:
            raise GanforgeError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        flat[key.strip()] = value
    return unflatten(flat)


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_all(layers: list[dict]) -> dict:
    merged: dict = {}
    for layer in layers:
        merged = merge(merged, layer)
    return merged


def flatten(d: dict, prefix: str = "") -> dict:
    """{'train': {'lr_g': 1}} -> {'train.lr_g': 1}"""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict) -> dict:
    """{'train.lr_g': 1} -> {'train': {'lr_g': 1}}"""
    out: dict = {}
    for k, v in flat.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise GanforgeError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise GanforgeError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GanforgeError(f"config file {p} must hold a mapping")
    return data


def preset_path(model: str, data: str) -> Path:
    return PRESETS / f"{model}_{data}.yaml"


def resolve(model: str, layers: list[dict]) -> RunConfig:
    """Build a RunConfig for `model` from override layers (lowest priority first)."""
    cfg = new_config(model)
    spec = get_model(model)
    defaults = dict(spec.train_defaults)
    if "resolution" in defaults:
        cfg.data.resolution = defaults.pop("resolution")
    apply_dict(cfg.train, defaults, "train.")
    merged = merge_all(layers)
    for section in ("data", "train", "arch", "recipe"):
        if merged.get(section) is not None and not isinstance(merged[section], dict):
            raise GanforgeError(f"config section {section!r} must be a mapping of keys (e.g. {section}: {{...}}), got "
                                f"{merged[section]!r}")
    data_name = (merged.get("data") or {}).get("name", cfg.data.name)
    if preset_path(model, str(data_name)).is_file():
        merged = merge(read_yaml(preset_path(model, str(data_name))), merged)
    notes = []
    if spec.cpu_defaults and _runs_on_cpu(merged):
        applied = {sec: {k: v for k, v in vals.items() if k not in (merged.get(sec) or {})}
                   for sec, vals in spec.cpu_defaults.items()}
        applied = {sec: vals for sec, vals in applied.items() if vals}
        if applied:
            merged = merge(applied, merged)
            for sec, vals in applied.items():  # cfg holds the paper's values (the family's defaults) here
                for k, v in vals.items():
                    notes.append(f"{sec}.{k}={v} (paper: {getattr(getattr(cfg, sec), k, '?')})")
    if "model" in merged and merged["model"] != model:
        raise GanforgeError(f"config says model {merged['model']!r} but {model!r} was asked for")
    merged.pop("model", None)
    apply_dict(cfg, merged)
    train_given = merged.get("train") or {}
    if cfg.train.optimizer in spec.optimizer_defaults:  # e.g. the 2014 GAN's SGD settings, unless set here
        apply_dict(cfg.train, {k: v for k, v in spec.optimizer_defaults[cfg.train.optimizer].items()
                               if k not in train_given}, "train.")
    if cfg.train.minutes > 0 and "steps" not in train_given:
        cfg.train.steps = 0  # a time budget alone: the clock decides, not the default step count
    if not str(cfg.data.name).strip():  # `--data "$DATA"` with DATA unset must not become "." or a default
        raise GanforgeError("--data (data.name) is empty: name a dataset (ganforge data list) or a folder of images")
    data_path = Path(cfg.data.name).expanduser()
    if cfg.data.name not in _dataset_names() and data_path.exists():
        cfg.data.name = str(data_path.resolve())  # a resume from another folder still finds the data
    validate(cfg)
    cfg.preset_notes = notes  # not a config field: what the CPU preset set, for the run to announce
    return cfg


def _runs_on_cpu(merged: dict) -> bool:
    from .train.device import pick_device

    try:
        return pick_device(str((merged.get("train") or {}).get("device", "auto"))).type == "cpu"
    except GanforgeError:
        return False  # validate() reports the bad device


def _dataset_names() -> set[str]:
    from .data.paired import PAIRED
    from .data.sources import DATASETS, RENDERED

    return set(DATASETS) | set(RENDERED) | set(PAIRED)


def validate(cfg: RunConfig) -> None:
    from .losses import LOSSES

    t, d = cfg.train, cfg.data
    if t.steps < 0 or (t.steps == 0 and t.minutes == 0):
        raise GanforgeError(f"train.steps must be >= 1, or 0 with train.minutes > 0 (no step limit), got {t.steps}")
    positive = {"train.batch_size": t.batch_size, "train.checkpoint_every": t.checkpoint_every,
                "train.keep_checkpoints": t.keep_checkpoints, "train.log_every": t.log_every,
                "train.sample_grid": t.sample_grid}
    for k, v in positive.items():
        if v < 1:
            raise GanforgeError(f"{k} must be >= 1, got {v}")
    if d.direction not in ("AtoB", "BtoA"):
        raise GanforgeError(f"data.direction must be AtoB or BtoA, got {d.direction!r}")
    if not t.dist_timeout_s > 0:
        raise GanforgeError(f"train.dist_timeout_s must be > 0 seconds, got {t.dist_timeout_s}")
    if t.diverge_retries < 0 or not 0 < t.diverge_lr_factor <= 1:
        raise GanforgeError(f"train.diverge_retries must be >= 0 and train.diverge_lr_factor in (0, 1], got "
                            f"{t.diverge_retries}, {t.diverge_lr_factor}")
    for k, v in {"train.lr_g": t.lr_g, "train.lr_d": t.lr_d}.items():
        if not (v > 0 and math.isfinite(v)):
            raise GanforgeError(f"{k} must be a finite number > 0, got {v}")
    for k, v in {"train.minutes": t.minutes, "train.ema_kimg": t.ema_kimg, "train.ema_rampup": t.ema_rampup,
                 "train.sample_every": t.sample_every}.items():
        if not (v >= 0 and math.isfinite(v)):  # `not >=` also catches NaN
            raise GanforgeError(f"{k} must be a finite number >= 0, got {v}")
    if not (t.lr_decay >= 1 and math.isfinite(t.lr_decay)) or not (0 <= t.lr_min < math.inf):
        raise GanforgeError(f"train.lr_decay must be >= 1 and train.lr_min >= 0, got {t.lr_decay}, {t.lr_min}")
    if not 0 <= t.momentum_final < 1 or not (0 <= t.momentum_ramp_kimg < math.inf):
        raise GanforgeError(f"train.momentum_final must lie in [0, 1) and train.momentum_ramp_kimg be >= 0, got "
                            f"{t.momentum_final}, {t.momentum_ramp_kimg}")
    if not all(0 <= b < 1 for b in t.betas):
        raise GanforgeError(f"train.betas must lie in [0, 1), got {list(t.betas)}")
    from .train.device import pick_device

    pick_device(t.device)
    if not 0 <= t.seed < 2**63:
        raise GanforgeError(f"train.seed must be in [0, 2**63), got {t.seed}")
    if t.eval_every < 0 or t.eval_n < 2:
        raise GanforgeError(f"train.eval_every must be >= 0 and train.eval_n >= 2, got {t.eval_every}, {t.eval_n}")
    if t.loss not in LOSSES:
        raise GanforgeError(f"unknown loss {t.loss!r}; known: {', '.join(LOSSES)}")
    if t.optimizer not in ("adam", "sgd"):
        raise GanforgeError(f"train.optimizer must be adam or sgd, got {t.optimizer!r}")
    if t.precision not in ("auto", "bf16", "fp32"):
        raise GanforgeError(f"train.precision must be auto, bf16 or fp32, got {t.precision!r}")
    from .train import compile as compiling

    compiling.check(cfg)
    if d.channels not in (0, 1, 3):
        raise GanforgeError(f"data.channels must be 0 (as the data is), 1 or 3, got {d.channels}")
    if d.resolution < 4:
        raise GanforgeError(f"data.resolution must be >= 4, got {d.resolution}")
    if d.stream not in ("auto", "always", "never"):
        raise GanforgeError(f"data.stream must be auto, always or never, got {d.stream!r}")
    if not (d.memory_mb > 0 and math.isfinite(d.memory_mb)):
        raise GanforgeError(f"data.memory_mb must be a finite number > 0, got {d.memory_mb}")
    if d.workers < -1:
        raise GanforgeError(f"data.workers must be >= 0, or -1 for automatic, got {d.workers}")
    _check_recipe(cfg)
    _check_architecture(cfg)


def _check_recipe(cfg: RunConfig) -> None:
    """The recipe's own rules for its config section (augmentation values, a growth schedule against the
    resolution, ...): each recipe class checks its section in `check(cfg)`."""
    from .recipes import RECIPES

    RECIPES[get_model(cfg.model).recipe].check(cfg)


def _check_architecture(cfg: RunConfig) -> None:
    """Build the networks on the meta device (no memory, no compute) so that a resolution or an arch value the
    family cannot take is a clear error now, not a traceback later."""
    import torch

    spec = get_model(cfg.model)
    arch = cfg.arch
    if getattr(arch, "num_classes", 0) in (-1, -2):  # "as the data has": known once the data is loaded
        arch = dataclasses.replace(arch, num_classes=10)
    try:
        with torch.device("meta"):
            spec.build(arch, cfg.data.resolution, cfg.data.channels or 1)
    except (ValueError, RuntimeError, TypeError, ZeroDivisionError) as e:
        raise GanforgeError(f"{cfg.model} cannot be built with this config at {cfg.data.resolution}px: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def new_config(model: str) -> RunConfig:
    """A RunConfig of `model` with its family's and its recipe's config sections at their defaults."""
    from .recipes import RECIPES

    spec = get_model(model)
    return RunConfig(model=model, arch=spec.config_cls(), recipe=RECIPES[spec.recipe].config_cls())


# What a saved config of an older version meant, in today's keys: defaults that changed since are pinned to
# the old behaviour, so an old run samples and resumes as it trained.
MIGRATIONS = {
    1: {"recipe": {"augment": ""}, "arch": {"kernel_size": 4}},  # 0.1: no augmentation; dcgan's 4x4 kernels
}


def from_dict(d: dict) -> RunConfig:
    """Rebuild a RunConfig saved by `to_dict` (config.yaml, checkpoint metadata), migrating older versions."""
    if not isinstance(d, dict) or not isinstance(d.get("model"), str):
        raise GanforgeError("the saved config names no model: it is damaged")
    version = d.get("version", 1)
    check_version(version, CONFIG_VERSION, "the saved config")
    d = dict(d)
    model = d.pop("model")
    d.pop("version", None)
    cfg = new_config(model)
    for v in range(version, CONFIG_VERSION):
        for section, values in MIGRATIONS.get(v, {}).items():
            target = getattr(cfg, section)
            known = {f.name for f in dataclasses.fields(target)}
            apply_dict(target, {k: x for k, x in values.items() if k in known}, f"{section}.")
    apply_dict(cfg, d)
    if "compile" not in (d.get("train") or {}):  # saved before train.compile existed: the run trained eagerly, and
        cfg.train.compile = "off"                # resuming it eagerly keeps it bit-exact
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
