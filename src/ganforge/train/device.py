"""Which machine a run uses and at what precision: checked against this machine, with clear errors."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from ..registry import GanforgeError


def pick_device(name: str) -> torch.device:
    """auto, cpu, cuda or cuda:N, checked against this machine (a clear error, never a CUDA traceback)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise GanforgeError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise GanforgeError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GanforgeError(f"device {name!r} asked for, but no CUDA device is available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GanforgeError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                                f"CUDA device(s)")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def pick_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    # bf16 is native from Ampere (compute capability 8) on; older GPUs only emulate it, slowly.
    fast = torch.cuda.get_device_capability(device)[0] >= 8 if device.type == "cuda" else cpu_has_fast_bf16()
    if precision == "auto":
        return torch.bfloat16 if fast else None
    return torch.bfloat16  # asked for explicitly: honour it even where it is emulated


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on `device`, or nothing for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def uses_conv(net: torch.nn.Module) -> bool:
    """Whether `net` convolves (so channels_last pays): torch's conv modules, or any 4-D weight (equalised-LR
    layers call F.conv2d)."""
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in net.modules()) or any(
        p.ndim == 4 for p in net.parameters())
