"""Will it fit? An estimate of the memory a run or a sampling request needs, made before any work, so that an
impossible request (a 65536px DCGAN, a batch of ten million, a billion samples) is one clear line that says
what would fit, not an allocation error deep in training or a machine brought to its knees.

The estimate builds G and D on PyTorch's meta device (no memory, no arithmetic) and runs one forward pass of
each there with hooks on every module: the sum of the modules' outputs is what autograd keeps for the backward
pass. Training needs, per run: weights, gradients and Adam's two moments of G and D (and the EMA copy of G);
per sample: G's activations and D's on a real and on a fake batch, twice over (the backward pass's gradients
are the activations' size); and the data in memory (a named dataset at the run's resolution). It is an estimate
(the allocator, workspaces and autocast copies come on top), used only to refuse what clearly cannot fit.
"""
from __future__ import annotations

import os

import torch

from ..registry import GanforgeError, get_model

GiB = 2**30
HEADROOM = 0.9  # of the available memory, the most a request may plan to use

# named datasets' training items, image fields per item and channels: the in-memory data's share (held at the
# run's resolution)
DATASET_ITEMS = {"fashion-mnist": (60000, 1, 1), "mnist": (60000, 1, 1), "emoji": (1870, 1, 3),
                 "edges2fashion": (60000, 2, 1), "gray2emoji": (1684, 2, 3)}


def available_bytes(device: torch.device) -> int:
    """Memory a run can still take: the GPU's free memory, or the host's MemAvailable (Linux) or physical RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _human(n: float) -> str:
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def _activation_elements(net: torch.nn.Module, *args, **kwargs) -> int:
    """Elements of every module output in one forward pass on the meta device."""
    total = [0]

    def hook(module, args, out):
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if torch.is_tensor(t):
                total[0] += t.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def training_estimate(cfg, channels: int, batch: int | None = None, resolution: int | None = None,
                      on_gpu: bool = False) -> dict:
    """Bytes a run of `cfg` needs (keys: weights, activations, data, total), from meta-device networks; with
    `on_gpu`, what the GPU holds."""
    from ..recipes import RECIPES

    spec = get_model(cfg.model)
    r = resolution or cfg.data.resolution
    b = batch or cfg.train.batch_size
    arch = cfg.arch
    if getattr(arch, "num_classes", 0) < 0:  # "as the data has": not known before the data is read
        import dataclasses

        arch = dataclasses.replace(arch, num_classes=10)
    with torch.device("meta"):
        G, D = spec.build(arch, r, channels)
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    weights = 4 * (4 * (n_g + n_d) + (n_g if cfg.train.ema else 0))  # weights, grads, Adam's m and v; EMA
    activations = 0
    try:
        recipe = RECIPES[spec.recipe](G, None, cfg)
        image = torch.empty(1, channels, r, r, device="meta")  # never allocated: a 65536px image is 51 GB
        batch1 = {"image": image, "source": image, "label": torch.zeros(1, dtype=torch.int64)}
        one = recipe.inputs(1, torch.Generator().manual_seed(0), batch=batch1)
        meta = {k: (torch.empty((b, *v.shape[1:]), dtype=v.dtype, device="meta") if torch.is_tensor(v) and v.ndim
                    else [torch.empty((b, *t.shape[1:]), dtype=t.dtype, device="meta") for t in v]
                    if isinstance(v, list) else v) for k, v in one.items()}
        g_act = _activation_elements(G, **meta)
        x = torch.empty(b, channels, r, r, device="meta")
        d_args = (x, x) if getattr(G, "translates", False) else (x, meta["c"]) if "c" in meta else (x,)
        try:
            d_act = _activation_elements(D, *d_args)
        except Exception:  # noqa: BLE001 (e.g. an autocast region, which the meta device lacks): D mirrors G
            d_act = g_act
        activations = 4 * 2 * (g_act + 2 * d_act)  # fp32; the backward's gradients as large again
    except Exception:  # noqa: BLE001 (a family whose forward cannot run on meta: weights and data only)
        activations = 0
    items, fields, native = DATASET_ITEMS.get(cfg.data.name, (0, 1, channels))
    data = items * fields * (cfg.data.channels or native) * r * r
    if on_gpu:  # the host holds the data; the GPU a copy only where it fits data.memory_mb (data/batches.py)
        data = min(data, int(cfg.data.memory_mb * 2**20))
    return {"weights": weights, "activations": activations, "data": data,
            "total": weights + activations + data}


def check_training(cfg, channels: int | None, device: torch.device) -> None:
    """A clear error, before any work, when a run of `cfg` clearly cannot fit in `device`'s memory; it says what
    would fit (a smaller batch, or a lower resolution at this batch)."""
    channels = channels or 3  # not known before the data is read: the larger (a named dataset's own is used)
    gpu = device.type == "cuda"
    est = training_estimate(cfg, channels, on_gpu=gpu)
    avail = available_bytes(device) * HEADROOM
    if est["total"] <= avail:
        return
    r, b = cfg.data.resolution, cfg.train.batch_size
    where = f"this GPU has {_human(avail / HEADROOM)} free" if device.type == "cuda" else \
        f"this machine has {_human(avail / HEADROOM)} of memory available"
    per_sample = est["activations"] / b
    fits_b = int((avail - est["weights"] - est["data"]) / per_sample) if per_sample else 0
    hint = []
    if est["weights"] > avail / 2:
        hint.append(f"the network's weights and optimiser state alone need {_human(est['weights'])}: choose "
                    f"smaller arch.* widths (ganforge train {cfg.model} --dry-run lists them)")
    elif fits_b >= 1:
        hint.append(f"--batch-size {fits_b} or less would fit")
    else:
        res = r // 2
        while res >= 4:
            try:
                if training_estimate(cfg, channels, resolution=res, on_gpu=gpu)["total"] <= avail:
                    hint.append(f"at batch {b}, --resolution {res} would fit")
                    break
            except (ValueError, RuntimeError, GanforgeError):  # not a resolution this model builds at
                pass
            res //= 2
        if not hint:
            hint.append("a smaller network (see the arch.* keys: ganforge train MODEL --dry-run) is needed")
    raise GanforgeError(
        f"{cfg.model} at {r}px with batch {b} needs about {_human(est['total'])} of memory (activations "
        f"{_human(est['activations'])}, weights and optimiser {_human(est['weights'])}, data {_human(est['data'])}), "
        f"but {where}: {'; '.join(hint)}")


def check_samples(n: int, channels: int, resolution: int, what: str | None = None) -> None:
    """`n` images as float32 tensors, then uint8: a clear error for a request that cannot fit in host memory.
    `what` names the request in the message (default: "--n N samples")."""
    need = n * channels * resolution * resolution * (4 + 4 + 1)
    avail = available_bytes(torch.device("cpu")) * HEADROOM
    if need > avail:
        per = channels * resolution * resolution * 9
        raise GanforgeError(f"{what or f'--n {n} samples'} of {channels}x{resolution}x{resolution} need about "
                            f"{_human(need)} of memory, more than the {_human(avail / HEADROOM)} available; "
                            f"{max(1, int(avail // per))} images or fewer would fit")
