"""Checkpoints: one safetensors file per save, written to a temporary name, flushed and renamed, so a crash
at any moment leaves the previous checkpoint intact.

Everything is tensors plus one JSON metadata string: network weights (`G.*`, `D.*`, `G_ema.*`), optimiser
state tensors (`opt.G.state.<i>.<key>`), RNG states (`rng.*`, uint8); the JSON holds the step, the resolved
config, optimiser hyper-parameters and the data position. Loading runs no code (no pickle), so a checkpoint
from a stranger is as safe to open as an image.

The JSON also holds a CRC-32 of each group of tensors (`checksums`: G, D, G_ema, opt, rng), checked whenever
the group is read, so a file damaged on disk (bit flips, a partial copy) is found and named, and `--resume`
falls back to the newest checkpoint that is whole. A write that fails (a full disk, a read-only folder)
leaves no partial file and the previous checkpoint intact, and says so.
"""
from __future__ import annotations

import json
import os
import re
import time
import warnings
import zlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from ..registry import GanforgeError, check_version

FORMAT = "ganforge-checkpoint"
FORMAT_VERSION = 2  # 2 (ganforge 0.2): recipe state, images shown; format 1 files still load
_NAME = re.compile(r"^step_(\d{8,})\.safetensors$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are never listed)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        delay = float(os.environ.get("GANFORGE_TEST_SLOW_WRITE", "0") or 0)  # tests kill us inside this window
        if delay:
            time.sleep(delay)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a read-only folder, an interrupt: no partial file left behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _crc(t: torch.Tensor, crc: int = 0) -> int:
    return zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)


def checksums(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """CRC-32 per group of tensors (the name before the first dot: G, D, G_ema, opt, rng), in name order."""
    out: dict[str, int] = {}
    for k in sorted(tensors):
        group = k.split(".", 1)[0]
        out[group] = _crc(tensors[k], out.get(group, 0))
    return {g: f"{v:08x}" for g, v in out.items()}


def verify(path: Path, header: dict, tensors: dict[str, torch.Tensor], groups: list[str] | None = None) -> None:
    """Compare the groups' tensors with the checksums written with them (files without checksums pass)."""
    expected = header.get("checksums")
    if not expected:
        return
    found = checksums(tensors)
    for group in groups or sorted(expected):
        if found.get(group) != expected.get(group):
            raise GanforgeError(f"{path} is damaged: its {group} tensors do not match the checksum written with "
                                f"them (a disk fault or an incomplete copy)")


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(prefix: str, meta: dict, tensors: dict) -> dict:
    state: dict = {}
    for name, t in tensors.items():
        if name.startswith(prefix + ".state."):
            pid, key = name[len(prefix) + 7:].split(".", 1)
            state.setdefault(int(pid), {})[key] = t
    for name, v in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, step: int, nets: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], rng: dict[str, torch.Tensor],
                    meta: dict, keep: int) -> Path:
    """Save everything needed to continue the run bit-identically, then prune to the newest `keep`."""
    tensors: dict[str, torch.Tensor] = {}
    for name, net in nets.items():
        for k, v in net.state_dict().items():
            tensors[f"{name}.{k}"] = v
    opt_meta = {}
    for name, opt in optimizers.items():
        t, m = _optimizer_tensors(f"opt.{name}", opt)
        tensors.update(t)
        opt_meta[name] = m
    for k, v in rng.items():
        tensors[f"rng.{k}"] = v
    tensors = {k: v.detach().to("cpu", copy=False).contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, "nets": sorted(nets),
              "optimizers": opt_meta, **meta, "checksums": checksums(tensors)}
    payload = st_save(tensors, metadata={"ganforge": json.dumps(header)})
    folder = Path(run_dir) / "checkpoints"
    path = folder / checkpoint_name(step)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, payload)
    except OSError as e:
        previous = [p for p in list_checkpoints(run_dir) if _step_of(p) != step]
        kept = f"the previous checkpoint ({previous[-1].name}) is intact" if previous else "no earlier checkpoint"
        raise GanforgeError(f"cannot write the checkpoint {path} ({e.strerror or type(e).__name__}; "
                            f"{len(payload) / 2**20:.1f} MiB); {kept}. Free space or fix the folder's permissions, "
                            f"then --resume") from None
    # Prune only checkpoints older than the one just written, so a newer file left by an earlier attempt
    # (or an unreadable one) can never make us delete the checkpoint we just saved.
    older = [p for p in list_checkpoints(run_dir) if _step_of(p) < step]
    for old in older[: max(0, len(older) - (keep - 1))]:
        old.unlink(missing_ok=True)
    return path


def _step_of(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def read_header(path: Path) -> dict:
    """The JSON metadata of a checkpoint or exported model; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise GanforgeError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise GanforgeError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if "ganforge" not in meta:
        raise GanforgeError(f"{path} is a safetensors file but not a ganforge checkpoint or model")
    try:
        header = json.loads(meta["ganforge"])
    except json.JSONDecodeError:
        raise GanforgeError(f"{path}: its ganforge metadata is damaged (not JSON)") from None
    check_version(header.get("format_version", 0), FORMAT_VERSION, f"{path} (checkpoint format)")
    return header


def read_tensors(path: Path, prefix: str | None = None, device: str = "cpu",
                 header: dict | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, optionally only those under `prefix.` (with the prefix stripped), checked
    against the checksums written with them."""
    header = read_header(path) if header is None else header
    raw = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for k in f.keys():
                if prefix is None or k.startswith(prefix + "."):
                    raw[k] = f.get_tensor(k)
    except Exception as e:  # noqa: BLE001 (safetensors raises its own types for a damaged file)
        raise GanforgeError(f"{path} is damaged: its tensors cannot be read ({type(e).__name__}: {e})") from None
    verify(path, header, raw, [prefix] if prefix is not None else None)
    if prefix is None:
        out = raw
    else:
        out = {k[len(prefix) + 1:]: v for k, v in raw.items()}
    return {k: v.to(device) for k, v in out.items()} if str(device) != "cpu" else out


def load_training_state(path: Path, nets: dict, optimizers: dict, device) -> tuple[dict, dict]:
    """Restore nets and optimisers in place; return (header, rng tensors)."""
    header = read_header(path)
    tensors = read_tensors(path, header=header)
    for name, net in nets.items():
        sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        net.load_state_dict(sd)
    for name, opt in optimizers.items():
        opt.load_state_dict(_optimizer_state(f"opt.{name}", header["optimizers"][name],
                                             {k: v for k, v in tensors.items() if k.startswith(f"opt.{name}.")}))
        _match_layouts(opt)
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    return header, rng


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give moment tensors their parameter's memory layout again (safetensors stores them contiguous).
    Bit-exact resume needs it: a fused optimiser may take another code path for another layout."""
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def newest_checkpoint(run_dir: Path, whole: bool = True) -> Path | None:
    """The newest checkpoint that reads whole (with `whole`, every tensor read and checked against its
    checksum; else the header alone); a damaged one (a disk fault) is skipped with a warning that names it."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            header = read_header(path)
            if whole:
                read_tensors(path, header=header)
            return path
        except GanforgeError as e:
            warnings.warn(f"skipping a damaged checkpoint: {e}", stacklevel=2)
    return None


def resolve_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A run directory (its newest checkpoint), a checkpoint file, or an exported model file."""
    p = Path(run_or_ckpt)
    if p.is_dir():
        ckpt = newest_checkpoint(p)
        if ckpt is None:
            raise GanforgeError(f"{p} holds no complete checkpoint (looked in {p / 'checkpoints'})")
        return ckpt
    if p.is_file():
        return p
    raise GanforgeError(f"{p} is neither a run directory nor a checkpoint file")
