"""Batches for the training loop: deterministic epochs at whatever resolution and batch size the recipe's
schedule asks for, from memory or streamed from disk by DataLoader workers.

Each epoch's order is a permutation seeded by (seed, epoch), so the data position is two integers (epoch, and
images taken in the epoch) and a resumed run reads exactly the batches the uninterrupted run would, whether the
data is in memory or streamed, and whatever resolution or batch size the schedule changes to.

Under torchrun (`world.size` ranks) a step takes a global batch of batch_size x size from the same order, and
each rank reads only its own slice of it: together the ranks see exactly what one process would with the
global batch.
"""
from __future__ import annotations

import torch

from ..registry import GanforgeError
from .sources import IMAGE_KEYS, ImageData, to_unit_range


class _Items(torch.utils.data.Dataset):
    """A streamed dataset's items at one resolution, for DataLoader workers."""

    def __init__(self, data: ImageData, resolution: int):
        self.data, self.resolution = data, resolution

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data.item(i, self.resolution)


class Batches:
    def __init__(self, data: ImageData, seed: int, device: torch.device, memory_format=torch.contiguous_format,
                 keys: set[str] | frozenset[str] = frozenset({"image"}), workers: int = 0, world=None):
        from ..train.dist import SINGLE

        missing = set(keys) - data.provides
        if missing:
            raise GanforgeError(f"the data ({data.name}) provides {', '.join(sorted(data.provides))}, not "
                                f"{', '.join(sorted(missing))}")
        self.data, self.seed, self.device, self.memory_format = data, seed, device, memory_format
        self.keys = set(keys)
        self.workers = workers
        self.world = world or SINGLE
        self.global_labels: torch.Tensor | None = None  # the last global batch's labels (G's inputs follow them)
        self.epoch, self.offset = 0, 0
        self._perm: torch.Tensor | None = None
        self._on_device: dict[tuple[str, int], torch.Tensor] = {}
        self._stream = None  # (resolution, batch_size, epoch, offset it started at, iterator)

    def check(self, batch_size: int) -> None:
        """`batch_size` per rank: the data must hold one global batch."""
        n = batch_size * self.world.size
        if len(self.data) < n:
            what = f"one batch ({batch_size})" if n == batch_size else \
                f"one global batch ({batch_size} x {self.world.size} processes)"
            raise GanforgeError(f"the data has {len(self.data)} images, fewer than {what}; lower --batch-size")

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.data), generator=g)

    def _roll(self, batch_size: int) -> None:
        """Make the current epoch's order; move to the next epoch where the rest cannot fill a global batch (an
        epoch's ragged end is dropped, so every batch is full)."""
        self.check(batch_size)
        if self._perm is None:
            self._perm = self._permutation()
        if self.offset + batch_size * self.world.size > len(self.data):
            self.epoch, self.offset = self.epoch + 1, 0
            self._perm = self._permutation()

    def _advance(self, batch_size: int) -> torch.Tensor:
        """The next batch's indices (this rank's slice of the global batch)."""
        self._roll(batch_size)
        n = batch_size * self.world.size
        idx = self._perm[self.offset: self.offset + n]
        self.offset += n
        self._note_labels(idx)
        return idx[self.world.shard(n)]

    def _note_labels(self, idx: torch.Tensor) -> None:
        if self.world.active and self.data.labels is not None:
            self.global_labels = self.data.labels[idx]

    def next(self, resolution: int, batch_size: int) -> dict[str, torch.Tensor]:
        """{"image": [N, C, R, R] floats in [-1, 1] on the device, "label": int64 [N], "source": ...}."""
        if self.data.streamed:
            raw = self._next_streamed(resolution, batch_size)
        else:
            idx = self._advance(batch_size)
            raw, taken = {}, None
            for k in self.keys:
                on_device = self._on_device_copy(k, resolution) if k in IMAGE_KEYS else None
                if on_device is not None:
                    raw[k] = on_device[idx.to(on_device.device)]
                else:  # from the base or a cached resolution; else only these rows are resized
                    taken = taken if taken is not None else self.data.take(idx, resolution)
                    raw[k] = taken[k]
        return self._finish(raw)

    def _on_device_copy(self, key: str, resolution: int) -> torch.Tensor | None:
        # On a GPU the whole uint8 dataset lives on the device (Fashion-MNIST: 61 MB), so a batch is an index on
        # the GPU, not a host-to-device copy and a sync every step; where the resolution fits the budget.
        if self.device.type != "cuda" or not self.data.servable(resolution, key):
            return None
        hit = self._on_device.get((key, resolution))
        if hit is None:
            # one resolution per key on the device: a growing run never goes back to a stage it left
            for old in [k for k in self._on_device if k[0] == key]:
                del self._on_device[old]
            hit = self._on_device[(key, resolution)] = self.data.at(resolution, key).to(self.device)
        return hit

    def _finish(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k in self.keys:
            v = raw[k]
            if k in IMAGE_KEYS:  # [N, C, R, R] in [-1, 1]
                out[k] = to_unit_range(v.to(self.device, non_blocking=True)).contiguous(
                    memory_format=self.memory_format)
            else:
                out[k] = v.to(self.device, non_blocking=True)
        return out

    # -- streamed from disk
    def _batch_plan(self, batch_size: int):
        """Index lists from the current position to the end of the epoch (the DataLoader's batch_sampler): this
        rank's slice of each global batch."""
        perm, start, n = self._perm, self.offset, batch_size * self.world.size
        part = self.world.shard(n)
        return [perm[o: o + n][part].tolist() for o in range(start, len(self.data) - n + 1, n)]

    def _next_streamed(self, resolution: int, batch_size: int) -> dict[str, torch.Tensor]:
        self._roll(batch_size)
        if self._stream is None or self._stream[:2] != (resolution, batch_size) or self._stream[2] != self.epoch:
            loader = torch.utils.data.DataLoader(
                _Items(self.data, resolution), batch_sampler=self._batch_plan(batch_size),
                num_workers=self.workers, pin_memory=self.device.type == "cuda",
                persistent_workers=False, prefetch_factor=4 if self.workers else None,
                # its own generator: a DataLoader otherwise draws its workers' seed from the global RNG, and
                # the run would no longer replay the same dropout and augmentation after a resume
                generator=torch.Generator().manual_seed(self.seed))
            self._stream = (resolution, batch_size, self.epoch, iter(loader))
        batch = next(self._stream[3])
        n = batch_size * self.world.size
        self._note_labels(self._perm[self.offset: self.offset + n])
        self.offset += n
        return batch

    # -- state
    def state(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def restore(self, state: dict) -> None:
        self.epoch, self.offset, self._perm, self._stream = state["epoch"], state["offset"], None, None
