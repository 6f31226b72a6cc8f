"""Data-parallel training under torchrun: `torchrun --nproc_per_node=N -m ganforge train ...`.

Every rank holds the same G and D and runs every phase of the recipe on its own shard of the global batch;
after each phase's backward the gradients are averaged over the ranks (one all-reduce of one flat buffer per
phase, as NVlabs' stylegan2-ada-pytorch does instead of wrapping the nets in DistributedDataParallel: a
GAN's phases freeze one net while the other trains and lazy regularisation skips steps, which DDP's
unused-parameter bookkeeping handles badly). Identical gradients and identical optimiser steps keep the
weights identical on every rank; `weights_identical` checks it exactly.

What depends on the whole batch is agreed globally: the data order (every rank walks the same permutation
and takes its slice), G's inputs (drawn for the global batch from the shared generator, then sliced), the
decision to stop (a signal or the deadline on any rank stops all at the same step), divergence, and the
running statistics recipes keep (ADA's sign of D's outputs, StyleGAN2's path-length mean). Checkpoints,
samples, logs, evaluation and the progress bar are rank 0's.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..registry import GanforgeError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's part of a global batch of n (n = per-rank batch x size)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)


SINGLE = World()
_world = SINGLE


def world() -> World:
    return _world


def from_env() -> World:
    """The world torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK), or a single process."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise GanforgeError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (set by torchrun)") from None
    if size < 1 or not 0 <= rank < size:
        raise GanforgeError(f"RANK {rank} is not in a world of WORLD_SIZE {size}")
    return World(rank, size, local)


def init(device_name: str = "auto", timeout_s: float = 1800.0) -> World:
    """Join the process group when torchrun started this process (gloo on the CPU, NCCL on GPUs: each rank
    on its LOCAL_RANK's GPU); a single process otherwise. Collectives time out after `timeout_s`, so a rank
    that died leaves the others with an error, not a hang (torchrun also stops them when one fails)."""
    global _world
    w = from_env()
    if not w.active or dist.is_initialized():
        _world = w
        return w
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() <= w.local_rank:
            raise GanforgeError(f"rank {w.rank} wants GPU {w.local_rank}, but this node has "
                                f"{torch.cuda.device_count()}; start fewer processes per node")
        torch.cuda.set_device(w.local_rank)
    # each collective goes by its tensors' device: NCCL for the GPU's, gloo for the CPU's (the stop flags, which
    # so never wait for the GPU; and a CPU run on a machine with GPUs)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    _world = w
    return w


def shutdown() -> None:
    global _world
    if dist.is_initialized():
        dist.destroy_process_group()
    _world = SINGLE


def barrier() -> None:
    if _world.active:
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (a run directory's name, a resolved config)."""
    if not _world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_grads(params) -> None:
    """Average the gradients of `params` over the ranks, in place: one flat buffer, one all-reduce."""
    if not _world.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= _world.size  # (a rank's NaN spreads to all, as in one process: the divergence check rolls back)
        _unflatten(flat, grads)


def _unflatten(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy one flat buffer back into the tensors it was concatenated from."""
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(part.view_as(t))


def all_sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over the ranks, in place (a recipe's running statistic)."""
    if _world.active:
        dist.all_reduce(t)
    return t


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: a stop, a divergence."""
    return any_ranks([flag])[0]


class _GlobalBatchNorm:
    """BatchNorm whose training statistics are those of the global batch, on any backend (PyTorch's
    SyncBatchNorm runs on CUDA only): each rank's per-channel count, sum and sum of squares are summed by one
    all-reduce that autograd goes through (torch.distributed.nn), so the gradients are those of one process
    normalising the whole batch. Eval mode uses the running statistics, as plain BatchNorm; the class is
    swapped in place, so the module's parameters, buffers and state-dict keys stay as they were."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn import functional as dnn

        dims = [0, *range(2, x.ndim)]
        xf = x.float()
        n_local = torch.full((1,), xf.numel() / xf.shape[1], device=x.device, dtype=torch.float32)
        packed = dnn.all_reduce(torch.cat([xf.sum(dims), xf.square().sum(dims), n_local]))
        c = x.shape[1]
        n = packed[-1]
        mean = packed[:c] / n
        var = (packed[c: 2 * c] / n - mean.square()).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                # momentum None: a cumulative average, as BatchNorm's
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = [1, c] + [1] * (x.ndim - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm over the global batch: PyTorch's SyncBatchNorm on GPUs; on CPUs (gloo) each BatchNorm's class
    becomes a global-statistics twin of itself."""
    if any(p.is_cuda for p in module.parameters()):
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    from torch.nn.modules.batchnorm import _BatchNorm

    for m in module.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, _GlobalBatchNorm):
            m.__class__ = type(f"Global{type(m).__name__}", (_GlobalBatchNorm, type(m)), {})
    return module


def broadcast_buffers(*modules) -> None:
    """Rank 0's buffers on every rank, as DistributedDataParallel does at each step: the statistics a network
    tracks as it runs (BatchNorm's running mean and variance, StyleGAN's average w) come from each rank's own
    shard; one broadcast of one flat buffer makes them rank 0's everywhere."""
    if not _world.active:
        return
    bufs = [b for m in modules for b in m.buffers() if b.is_floating_point()]
    if bufs:
        flat = torch.cat([b.reshape(-1) for b in bufs])
        dist.broadcast(flat, src=0)
        _unflatten(flat, bufs)


def any_ranks(flags: list[bool]) -> list[bool]:
    """`any_rank` for several flags in one all-reduce."""
    if not _world.active:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags])  # on the CPU (gloo): no wait for the GPU
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def differing(named: dict[str, torch.Tensor]) -> list[str]:
    """The names of the tensors ({"G.net.0.weight": ...}) that are not the same, to the bit, on every rank."""
    if not _world.active:
        return []
    names = [k for k, t in named.items() if t.is_floating_point()]
    tensors = [named[k].detach().float().reshape(-1) for k in names]
    flat = torch.cat(tensors)
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    same = hi.eq(lo) | (hi.isnan() & lo.isnan())
    out, offset = [], 0
    for name, t in zip(names, tensors):
        if not bool(same[offset: offset + t.numel()].all()):
            out.append(name)
        offset += t.numel()
    return out


