"""The one training loop: steps, phases, EMA, mixed precision, checkpoints, logs and samples for every family.

The loop knows phases, not GAN maths (stylegan2-ada's `accumulate_gradients(phase=...)`), and not which family
it trains: the recipe (ganforge.recipes) says what the batch must hold, makes G's inputs, schedules resolution
and batch size by images shown, and gives the losses of each phase; the loop does backward and the optimiser
steps. Resuming restores the weights, optimiser states, recipe state, RNG states and data position, so on CPU
a run stopped and resumed ends bit-identical to one never stopped.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import config as config_mod
from ..config import RunConfig
from ..data import ImageData, load_data
from ..data.batches import Batches
from ..recipes import RECIPES, Phase, chunks, full_size, to_device
from ..recipes.growth import fade_reals
from ..registry import GanforgeError, get_model
from ..viz import build_progress_gif, save_grid
from .checkpoint import (atomic_write_bytes, checkpoint_name, list_checkpoints, load_training_state,
                         newest_checkpoint, save_checkpoint)
from . import dist
from . import compile as compiling
from .device import autocast, pick_device, pick_precision, uses_conv
from .ema import EMA, has_batchnorm, recalibrate_batchnorm
from .health import HealthMonitor
from .logging import MetricsLog
from .run import RunLock, cleanup_temporaries


# ------------------------------------------------------------------------------------------ the run

@dataclass
class Setup:
    """Everything a run is made of, built from a resolved config (also used by the speed benchmark)."""
    cfg: RunConfig
    device: torch.device
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module | None
    opt: dict
    recipe: object
    autocast_dtype: torch.dtype | None
    memory_format: torch.memory_format
    lr_scale: float = 1.0  # lowered by each rollback after a divergence (train.diverge_lr_factor)
    world: dist.World = dist.SINGLE  # under torchrun: gradients averaged over the ranks after each phase
    compiled: tuple[str, ...] = ()  # the networks torch.compile runs (train.compile; train/compile.py)

    def autocast(self, phase: Phase | None = None):
        """The run's precision, or fp32 where a phase asks for it (R1 and path-length penalties do)."""
        return autocast(self.device, None if phase is not None and phase.precision == "fp32" else self.autocast_dtype)

    def apply_schedule(self, schedule) -> None:
        """Growing networks (recipes/growth.py): set the schedule's stage on G, D and G_ema; where the recipe
        asks, clear the optimisers' state when a resolution starts fading in and when it stabilises."""
        nets = [n for n in (self.G, self.D, self.G_ema) if n is not None and hasattr(n, "set_growth")]
        if not nets:
            return
        self.set_learning_rates(schedule.lr)
        stage = (schedule.resolution, schedule.alpha < 1)
        if stage != (nets[0].stage_resolution, nets[0].fading) and getattr(self.recipe, "reset_optimizer_on_growth",
                                                                           False):
            for opt in self.opt.values():
                opt.state.clear()
        for net in nets:
            net.set_growth(schedule.resolution, schedule.alpha)

    def set_learning_rates(self, lr: float | None = None) -> None:
        """Adam's learning rates: the schedule's `lr` (else train.lr_g, train.lr_d), times the recipe's lazy-
        regularisation scale, times `lr_scale` (1 until a divergence is rolled back)."""
        t = self.cfg.train
        scale = getattr(self.recipe, "opt_scale", {})
        for name, base in (("G", lr or t.lr_g), ("D", lr or t.lr_d)):
            for group in self.opt[name].param_groups:
                group["lr"] = base * scale.get(name, 1.0) * self.lr_scale

    def train_step(self, batch: dict, inputs: dict, step: int = 0, schedule=None) -> dict[str, torch.Tensor]:
        """One step of every phase of the recipe; returns detached losses and stats (no host sync)."""
        if schedule is not None:
            self.apply_schedule(schedule)
            if schedule.alpha < 1:  # a resolution fading in: the reals fade in alike
                batch = {**batch, "image": fade_reals(batch["image"], schedule.alpha)}
        ctx = self.recipe.begin_step(batch, inputs, schedule)
        out = {}
        for phase in self.recipe.phases:
            if step % phase.every:
                continue
            frozen = [getattr(self, name) for name in phase.frozen]
            for net in frozen:
                net.requires_grad_(False)
            try:
                with self.autocast(phase):
                    losses = self.recipe.losses(phase.name, ctx)
                total = sum(losses.values())
                opt = self.opt[phase.trains]
                opt.zero_grad(set_to_none=True)
                total.backward()
                if self.world.active:
                    dist.average_grads([p for g in opt.param_groups for p in g["params"]])
                opt.step()
            finally:
                for net in frozen:
                    net.requires_grad_(True)
            out.update({k: v.detach() for k, v in losses.items()})
        out.update(ctx.get("stats", {}))
        if self.world.active:
            dist.broadcast_buffers(self.G, self.D)  # one set of running statistics: rank 0's (DDP's rule)
        return out

    @property
    def sampler(self) -> torch.nn.Module:
        return self.G_ema if self.G_ema is not None else self.G


def make_optimizer(params, cfg: RunConfig, lr: float, device: torch.device, scale: float = 1.0):
    """`scale` c: lr * c and Adam's betas ** c (lazy regularisation's rescaling, StyleGAN2 section 3.1)."""
    t = cfg.train
    if t.optimizer == "adam":
        lr, betas = lr * scale, tuple(b ** scale for b in t.betas)
        # The fused kernel updates all parameters in one pass (CPU and CUDA); fall back where it is missing.
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=t.betas[0], foreach=True)


def adjust_sgd(opt: dict, cfg: RunConfig, step: int, nimg: int, lr_scale: float = 1.0) -> None:
    """SGD's schedules, as functions of the step and images shown (so a resume lands on the same values): the
    learning rate divided by train.lr_decay every step down to train.lr_min, and momentum moving linearly from
    betas[0] to train.momentum_final over train.momentum_ramp_kimg (the 2014 GAN's pylearn2 schedules)."""
    t = cfg.train
    decay = t.lr_decay ** -step
    ramp = min(1.0, nimg / (t.momentum_ramp_kimg * 1000)) if t.momentum_ramp_kimg > 0 else 1.0
    momentum = t.betas[0] + (t.momentum_final - t.betas[0]) * ramp if t.momentum_final > 0 else t.betas[0]
    for name, lr0 in (("G", t.lr_g), ("D", t.lr_d)):
        for group in opt[name].param_groups:
            group["lr"] = max(lr0 * decay, t.lr_min) * lr_scale
            group["momentum"] = momentum


def build(cfg: RunConfig, channels: int, device: torch.device | None = None, world: dist.World = dist.SINGLE) -> Setup:
    device = device or pick_device(cfg.train.device)
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)  # under torchrun: this process's GPU, whatever index was asked
    if device.type == "cuda":
        # Fixed shapes every step: let cuDNN pick the fastest kernels, unless the run must be bit-exact.
        torch.backends.cudnn.benchmark = not cfg.train.deterministic
        torch.backends.cudnn.deterministic = cfg.train.deterministic
        if cfg.train.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS reductions
            torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.train.seed)  # initial weights depend on the seed alone
    spec = get_model(cfg.model)
    if getattr(cfg.arch, "num_classes", 0) < 0:
        raise GanforgeError("arch.num_classes = -1 or -2 (as the data has) is resolved when the data is "
                            "loaded: train through ganforge.train.loop.train or the CLI")
    G, D = spec.build(cfg.arch, cfg.data.resolution, channels)
    fmt = torch.channels_last if cfg.train.channels_last and uses_conv(D) else torch.contiguous_format
    G = G.to(device, memory_format=fmt)
    D = D.to(device, memory_format=fmt)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.train.ema else None
    if world.active:
        if cfg.train.sync_batchnorm:  # batch statistics over the global batch (G_ema samples alone: plain BN)
            G, D = dist.sync_batchnorm(G), dist.sync_batchnorm(D)
        torch.manual_seed(cfg.train.seed * 1_000_003 + world.rank)  # each rank's own dropout, penalty noise
    recipe = RECIPES[spec.recipe](G, D, cfg)
    compiled = compiling.apply(cfg, G, D, device)
    scale = getattr(recipe, "opt_scale", {})
    opt = {"G": make_optimizer(G.parameters(), cfg, cfg.train.lr_g, device, scale.get("G", 1.0)),
           "D": make_optimizer(D.parameters(), cfg, cfg.train.lr_d, device, scale.get("D", 1.0))}
    return Setup(cfg, device, G, D, G_ema, opt, recipe, pick_precision(cfg.train.precision, device), fmt,
                 world=world, compiled=compiled)


def grid_layout(n: int, num_classes: int) -> tuple[int, int | None]:
    """(images, images per row) of a progress grid of about `n` images: square-ish, or for a conditional model
    one row per class (as many classes as rows fit, `n` // rows images each)."""
    if not num_classes:
        return n, None
    rows = min(num_classes, n)
    cols = max(1, n // rows)
    return rows * cols, cols


def translates(recipe) -> bool:
    """Whether the run's G translates images (pix2pix): its inputs come from the data, not from a seed."""
    return bool(getattr(recipe.G, "translates", False))


def fixed_pairs(data: ImageData, n: int, seed: int) -> dict[str, torch.Tensor]:
    """n pairs of the data chosen by `seed`, as a batch on the CPU ({"source", "image"} in [-1, 1]): what a
    translating model's grids and evaluation translate, the same in every grid and across resumes."""
    from ..data.sources import IMAGE_KEYS, to_unit_range

    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return {k: to_unit_range(v) if k in IMAGE_KEYS else v for k, v in data.take(idx).items()}


def grid_inputs(recipe, n: int, seed: int) -> dict:
    """The inputs of the progress grids: the same in every grid and across resumes; a conditional model's
    grid has one row per class (see grid_layout). (A translating model's grid: Trainer.__init__.)"""
    g = torch.Generator().manual_seed(seed + 777)
    labels = None
    k = getattr(recipe.G, "num_classes", 0)
    if k:
        n, cols = grid_layout(n, k)
        labels = torch.arange(n) // cols
    return recipe.inputs(n, g, labels=labels)


# ------------------------------------------------------------------------------------------ training

class Diverged(Exception):
    """A loss, weight or buffer became NaN or infinite; the loop rolls back (Trainer.roll_back)."""

    def __init__(self, step: int):
        super().__init__(f"diverged at step {step}")
        self.step = step


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, data: ImageData, progress: bool = True):
        self.cfg, self.run_dir, self.data = cfg, Path(run_dir), data
        self.world = dist.world()  # under torchrun: this rank; else a single process
        self.s = build(cfg, data.channels, world=self.world)
        s = self.s
        self.recipe = s.recipe
        workers = cfg.data.workers if cfg.data.workers >= 0 else min(4, os.cpu_count() or 1)
        self.batches = Batches(data, cfg.train.seed, s.device, s.memory_format, self.recipe.needs(cfg),
                               workers if data.streamed else 0, world=self.world)
        growth = getattr(self.recipe, "growth", None)  # every stage's batch must fit the data, checked now
        self.batches.check(max(growth.batch_at(r) for r, _, _ in growth.stages()) if growth is not None
                           else self.recipe.schedule(0).batch_size)
        self.z_gen = torch.Generator().manual_seed(cfg.train.seed + 1)  # G's inputs, on the CPU: see _run
        self.resumed_from: int | None = None
        self.ema = EMA(s.G, s.G_ema, cfg.train.ema_kimg, cfg.train.ema_rampup) if s.G_ema is not None else None
        self.bn_recalibrate = s.G_ema is not None and has_batchnorm(s.G)
        self.step = 0
        self.nimg = 0  # images shown to D (as reals) so far: what schedules, EMA and ADA count in
        self.rollbacks = 0  # divergences rolled back so far (saved in checkpoints)
        # wall time spent training, summed over the run's sessions (saved in checkpoints): what a budget across
        # interruptions (ganforge evolution) counts
        self.train_seconds = 0.0
        self._session_t0 = time.monotonic()
        self._acc: dict = {"sums": {}}  # the current log interval's summed losses (on the device): see _run
        self._initial: dict | None = None  # a fresh run's state at step 0, to roll back to before any checkpoint
        self.progress = progress and self.world.main  # one progress bar, rank 0's
        self.health = HealthMonitor(cfg.train.log_every, hasattr(cfg.recipe, "augment"))
        self.best_fid = math.inf
        self._eval_reference = None
        self._health_reals: dict[int, torch.Tensor] = {}
        self.grid_targets = None
        if translates(self.recipe):  # fixed pairs of the data (a quarter as many), shown as input | output | target
            pairs = fixed_pairs(data, max(1, cfg.train.sample_grid // 4), cfg.train.seed + 777)
            self.grid, self.grid_targets = self.recipe.inputs(len(pairs["image"]), None, batch=pairs), pairs["image"]
            self.grid_nrow = 3 * min(4, len(self.grid_targets))  # four triples per row
        else:
            self.grid = grid_inputs(self.recipe, cfg.train.sample_grid, cfg.train.seed)
            self.grid_nrow = grid_layout(cfg.train.sample_grid, getattr(s.G, "num_classes", 0))[1]
        s.apply_schedule(self.recipe.schedule(0))  # a growing run starts (and shows step 0) at its first stage

    # -- state
    def _nets(self) -> dict:
        nets = {"G": self.s.G, "D": self.s.D}
        if self.s.G_ema is not None:
            nets["G_ema"] = self.s.G_ema
        return nets

    def _rng(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "z": self.z_gen.get_state()}
        if self.s.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.s.device)
        return rng

    def save(self) -> Path | None:
        """Checkpoint this step, where it is not saved yet; a run whose losses or weights are no longer finite is
        never saved (Diverged). Under torchrun every rank calls it (the check is collective); rank 0 writes."""
        self._check_finite(weights=True)
        if not self.world.main:
            return None
        if self._saved_this_step():
            return self.run_dir / "checkpoints" / checkpoint_name(self.step)
        return self._write_checkpoint()

    def _write_checkpoint(self) -> Path:
        self._prepare_sampler()
        meta = {"config": self.cfg.to_dict(), "data": self.batches.state(), "nimg": self.nimg,
                "data_channels": self.data.channels, "classes": list(self.data.classes), "time": time.time(),
                "recipe_state": self.recipe.state_dict(),
                "best_fid": self.best_fid if math.isfinite(self.best_fid) else None,
                "lr_scale": self.s.lr_scale, "rollbacks": self.rollbacks, "world_size": self.world.size,
                "train_seconds": round(self.train_seconds + time.monotonic() - self._session_t0, 3),
                "global_batch": self.recipe.schedule(self.nimg).batch_size * self.world.size}
        return save_checkpoint(self.run_dir, self.step, self._nets(), self.s.opt, self._rng(), meta,
                               self.cfg.train.keep_checkpoints)

    def _saved_this_step(self) -> bool:
        ckpts = list_checkpoints(self.run_dir)
        return bool(ckpts) and ckpts[-1].name == checkpoint_name(self.step)

    def save_best(self) -> Path:
        """checkpoints/best.safetensors: a copy of this step's checkpoint, written atomically."""
        ckpts = list_checkpoints(self.run_dir)
        if not (ckpts and ckpts[-1].name == checkpoint_name(self.step)) and not self._finite(weights=True):
            return None  # evaluation's BatchNorm recalibration made G_ema non-finite: the next save() rolls back
        ckpt = ckpts[-1] if ckpts and ckpts[-1].name == checkpoint_name(self.step) else self._write_checkpoint()
        best = self.run_dir / "checkpoints" / "best.safetensors"
        atomic_write_bytes(best, ckpt.read_bytes())
        return best

    def restore(self, path: Path) -> None:
        header, rng = load_training_state(path, self._nets(), self.s.opt, self.s.device)
        self.step = self.resumed_from = header["step"]
        # format 1 (ganforge 0.1) had one batch size per run and no recipe state
        self.nimg = header.get("nimg", self.step * self.cfg.train.batch_size)
        self.recipe.load_state_dict(header.get("recipe_state") or {})
        self.best_fid = math.inf if header.get("best_fid") is None else header["best_fid"]
        self.s.lr_scale, self.rollbacks = header.get("lr_scale", 1.0), header.get("rollbacks", 0)
        self.train_seconds = header.get("train_seconds", 0.0)
        self.batches.restore(header["data"])
        torch.set_rng_state(rng["torch"])
        self.z_gen.set_state(rng["z"])
        if "cuda" in rng and self.s.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.s.device)
        if self.world.active:  # the checkpoint holds rank 0's streams: each rank its own again
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.world.rank + 7919 * self.step)
        saved = header.get("world_size", 1)
        if saved != self.world.size and self.world.main:
            print(f"warning: this run was saved with {saved} process(es) and resumes with {self.world.size}: the "
                  f"global batch and the data each step reads change from here on", file=sys.stderr)

    # -- divergence
    def _check_finite(self, weights: bool = False) -> None:
        """Raise Diverged where a loss since the last check, or (with `weights`) a weight or buffer of a network,
        is not finite. The losses are the log interval's sums, which the loop keeps anyway (a NaN or an infinity
        in any step stays in its interval's sum; earlier intervals were checked at their log): nothing is added
        to the step. One host read; called at log, sample, evaluation and checkpoint time only."""
        if dist.any_rank(not self._finite(weights)):  # under torchrun, all ranks roll back together
            raise Diverged(self.step)

    def _finite(self, weights: bool = False) -> bool:
        ok = [torch.isfinite(v).all() for k, v in self._acc["sums"].items() if k.startswith("loss")]
        if weights:
            ok += [torch.isfinite(v).all() for net in self._nets().values() for v in net.state_dict().values()
                   if v.is_floating_point()]
        return not ok or bool(torch.stack([f.reshape(()) for f in ok]).all())

    def _shared(self, ckpt: Path | None) -> Path | None:
        """Rank 0's choice of checkpoint, on every rank (each must read the same one: under torchrun on several
        nodes, --out must be a folder they all see)."""
        if not self.world.active:
            return ckpt
        ckpt = dist.broadcast_object(ckpt)
        if ckpt is not None and not ckpt.is_file():
            raise GanforgeError(f"rank {self.world.rank} cannot read rank 0's checkpoint {ckpt}: under torchrun on "
                                f"several machines, --out must be a folder every machine shares")
        return ckpt

    def _capture(self) -> dict:
        """Everything a rollback restores, in memory (a fresh run's step 0, before any checkpoint exists)."""
        return {"nets": {n: copy.deepcopy(net.state_dict()) for n, net in self._nets().items()},
                "opt": {n: copy.deepcopy(o.state_dict()) for n, o in self.s.opt.items()},
                "rng": {k: v.clone() for k, v in self._rng().items()}, "data": self.batches.state(),
                "step": self.step, "nimg": self.nimg, "recipe": copy.deepcopy(self.recipe.state_dict()),
                "best_fid": self.best_fid}

    def _apply(self, snap: dict) -> None:
        for n, net in self._nets().items():
            net.load_state_dict(snap["nets"][n])
        for n, o in self.s.opt.items():
            o.load_state_dict(copy.deepcopy(snap["opt"][n]))
        self.step, self.nimg, self.best_fid = snap["step"], snap["nimg"], snap["best_fid"]
        self.recipe.load_state_dict(copy.deepcopy(snap["recipe"]))
        self.batches.restore(snap["data"])
        torch.set_rng_state(snap["rng"]["torch"])
        self.z_gen.set_state(snap["rng"]["z"])
        if "cuda" in snap["rng"] and self.s.device.type == "cuda":
            torch.cuda.set_rng_state(snap["rng"]["cuda"], self.s.device)

    def roll_back(self, at_step: int) -> str:
        """After a divergence at `at_step`: back to the newest good checkpoint (or the run's start), learning rates
        times train.diverge_lr_factor; a clear error once train.diverge_retries rollbacks are spent. Returns what
        happened, for the log."""
        t = self.cfg.train
        rollbacks, scale, best = self.rollbacks + 1, self.s.lr_scale * t.diverge_lr_factor, self.best_fid
        ckpt = self._shared(newest_checkpoint(self.run_dir) if self.world.main else None)
        if rollbacks > t.diverge_retries:
            where = f"the newest good checkpoint is {ckpt}" if ckpt else "no checkpoint was saved"
            raise GanforgeError(
                f"training diverged (a loss or weight became NaN or infinite) at step {at_step}, "
                f"{'after ' + str(rollbacks - 1) + ' rollback(s) with learning rates down to x' + format(self.s.lr_scale, 'g') if rollbacks > 1 else 'and train.diverge_retries is 0'}; "
                f"{where}. Lower train.lr_g and train.lr_d, or try train.precision=fp32")
        if ckpt is not None:
            spent = self.train_seconds
            self.restore(ckpt)
            self.train_seconds = spent  # the wall time goes on (the abandoned steps took it too)
            to = f"checkpoint {ckpt.name}"
        elif self._initial is not None:
            self._apply(self._initial)
            to = "the start of the run"
        else:
            raise GanforgeError(f"training diverged at step {at_step} and no good checkpoint is left to go back to")
        self.rollbacks, self.s.lr_scale = rollbacks, scale
        self.best_fid = min(best, self.best_fid)  # best.safetensors may come from the abandoned steps: keep its bar
        self.health = HealthMonitor(t.log_every, self.health.can_augment)  # its counts were of the abandoned steps
        self.s.set_learning_rates()  # a growing run's schedule re-applies the scale at its next step
        return (f"training diverged (non-finite loss or weights) at step {at_step}: rolled back to {to} (step "
                f"{self.step}), learning rates x{scale:g} (rollback {rollbacks} of at most {t.diverge_retries})")

    # -- samples
    def _prepare_sampler(self) -> None:
        if self.bn_recalibrate:
            recalibrate_batchnorm(self.s.G_ema, self.recipe.inputs, self.s.device)

    @torch.no_grad()
    def _generate(self, inputs: dict, seed: int | None = None) -> torch.Tensor:
        """The sampling generator (G_ema with its own BN statistics, or G) in eval mode; fp32, on the CPU. What G
        draws as it runs (pix2pix's test-time dropout) comes from an RNG seeded with `seed` (default: the run's
        grid seed), never from the run's: grids and evaluations neither vary nor change the run's course."""
        from ..sampling import seeded_rng

        self._prepare_sampler()
        G = self.s.sampler
        was = G.training
        G.eval()
        # eager: a compiled G (no EMA) would compile eval-mode graphs for grids, and sample as ganforge.load does not
        with seeded_rng(self.s.device, self.cfg.train.seed + 777 if seed is None else seed), compiling.eager():
            images = torch.cat([full_size(G(**to_device(part, self.s.device)).float().cpu(), self.cfg.data.resolution)
                                for part in chunks(inputs, 256)])
        G.train(was)
        return images

    def write_samples(self) -> torch.Tensor:
        """The progress grid of this step; returns the generated images (a translator's outputs alone)."""
        images = self._generate(self.grid)
        shown = images
        if self.grid_targets is not None:
            shown = torch.stack([self.grid["source"].float(), images, self.grid_targets.float()], 1).flatten(0, 1)
        save_grid(shown, self.run_dir / "samples" / f"step_{self.step:08d}.png", nrow=self.grid_nrow,
                  meta=self.provenance())
        return images

    def provenance(self) -> dict[str, str]:
        """The origin of the run's pictures at this step: no checkpoint hash, as a grid may come before any
        checkpoint of its step exists."""
        from ..provenance import provenance

        return provenance(self.cfg.model, None, step=self.step, run=self.run_dir.name, seed=self.cfg.train.seed)

    # -- evaluation and health
    def _real_for_health(self, n: int, resolution: int) -> torch.Tensor:
        """Real images to compare samples with: at the stage's resolution (a growing run's samples are the
        stage's images, upscaled), shown at the run's resolution like the samples. Cached per resolution."""
        cache = self._health_reals
        if self.grid_targets is not None:  # a translator: the targets of the grid's inputs
            return self.grid_targets
        if resolution not in cache:
            idx = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(12345))[:n]
            cache[resolution] = full_size(self.data.batch(idx, resolution), self.cfg.data.resolution)
        return cache[resolution]

    def evaluate(self) -> dict:
        """FID/KID of the sampling generator against the data (the test split of a named dataset); the class
        histogram where a domain classifier exists. Uses its own RNGs: the run's course does not change."""
        from ..metrics.evaluate import ImageSet, evaluate, load_image_set, to_uint8
        from ..metrics.extractors import DOMAIN, default_extractor
        from ..metrics.translation import eval_values

        t = self.cfg.train
        if translates(self.recipe):
            return self._evaluate_translation()
        if self._eval_reference is None:
            from ..data.sources import DATASETS

            name = self.cfg.data.name
            if name in DATASETS:  # a named dataset's test split
                self._eval_reference = load_image_set(name, n=t.eval_n, split="test", resolution=self.data.resolution,
                                                      channels=self.data.channels)
            else:  # a folder (or no test split): the training images themselves, read as the run reads them
                idx = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(0))[: t.eval_n]
                self._eval_reference = ImageSet(self.data.take(idx)["image"], f"{self.data.name} (training images)")
        inputs = self.recipe.inputs(t.eval_n, torch.Generator().manual_seed(t.seed + 4242))
        with torch.random.fork_rng(devices=[]):
            fake_f = self._generate(inputs)
            fake = ImageSet(to_uint8(fake_f, "samples"), "samples", self.cfg.data.name)
            metrics = tuple(m for m in t.eval_metrics.split(",") if m)
            # KID subsets of at most half the samples, so its std measures something
            res = evaluate(fake, self._eval_reference, metrics, t.eval_extractor or None,
                           kid_subset_size=max(2, min(1000, t.eval_n // 2)), device=str(self.s.device))
            values = eval_values(res)
            warnings = []
            extractor = res["extractor"]
            if extractor in DOMAIN or default_extractor(self.cfg.data.name) in DOMAIN:
                from ..metrics.domain import class_histogram, classify

                _, logits = classify(fake_f, DOMAIN.get(extractor) or self.cfg.data.name)
                hist = class_histogram(logits)
                values.update({"health/classes_covered": hist["classes_covered"],
                               "health/class_entropy": hist["entropy"]})
                warnings = self.health.observe_classes(hist)
        return {"values": values, "warnings": warnings, "extractor": extractor}

    def _evaluate_translation(self) -> dict:
        """A translator's outputs for eval_n pairs of the training data, the same ones every time (the data's
        held-out split is `ganforge eval`'s): L1 to the targets and FID/KID against the targets."""
        from ..metrics.evaluate import ImageSet, evaluate, to_uint8
        from ..metrics.translation import eval_values, l1_error

        t = self.cfg.train
        if self._eval_reference is None:  # read once (a streamed folder is not read again at every evaluation)
            self._eval_reference = fixed_pairs(self.data, t.eval_n, t.seed + 4242)
        pairs = self._eval_reference
        with torch.random.fork_rng(devices=[]):
            fake_f = self._generate(self.recipe.inputs(len(pairs["source"]), None, batch=pairs), t.seed + 4242)
            values = {"eval/l1": l1_error(fake_f, pairs["image"])}
            metrics = tuple(m for m in t.eval_metrics.split(",") if m)
            res = evaluate(ImageSet(to_uint8(fake_f, "outputs"), "outputs", self.cfg.data.name),
                           ImageSet(to_uint8(pairs["image"], "targets"), f"{self.data.name} (targets)"),
                           metrics, t.eval_extractor or None, kid_subset_size=max(2, min(1000, len(fake_f) // 2)),
                           device=str(self.s.device))
        values.update(eval_values(res))
        return {"values": values, "warnings": [], "extractor": res["extractor"]}

    # -- the loop
    def run(self, steps: int, minutes: float = 0.0) -> dict:
        # Denormal floats make CPU arithmetic ~10x slower. Early GAN training on real data (exact -1
        # backgrounds) produces many, and a plain loop then crawls for hundreds of steps (measured here:
        # 50-170 img/s instead of 500). Flush them to zero for the whole run, then restore the default.
        flush = self.s.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            return self._run(steps, minutes)
        except OSError as e:  # a full disk, a read-only or vanished run directory: one clear line, nothing lost
            if e.errno not in _DISK_ERRORS:
                raise
            ckpt = newest_checkpoint(self.run_dir, whole=False) if self.run_dir.is_dir() else None
            kept = f"the newest checkpoint ({ckpt.name}) is intact" if ckpt else "no checkpoint was written yet"
            raise GanforgeError(f"cannot write {e.filename or self.run_dir} ({e.strerror}) at step {self.step}: "
                                f"training stopped; {kept}. Free space or fix the folder's permissions, then "
                                f"--resume") from None
        finally:
            if flush:
                torch.set_flush_denormal(False)

    def _run(self, steps: int, minutes: float) -> dict:
        s, cfg = self.s, self.cfg
        t = cfg.train
        log = MetricsLog(self.run_dir, self.resumed_from) if self.world.main else _NullLog()
        bar = None
        if self.progress:
            from tqdm import tqdm

            notes = getattr(cfg, "preset_notes", None)
            if notes:
                print(f"{cfg.model} on a CPU: scaled down from the paper (set these keys to change them): "
                      f"{', '.join(notes)}", file=sys.stderr)
            if hasattr(self.recipe, "growth") and not self.resumed_from:
                print(self.recipe.growth.describe(), file=sys.stderr)
            if s.compiled:
                print(f"torch.compile: {' and '.join(s.compiled)} (train.compile={t.compile}); the first steps "
                      f"compile, which takes a minute or more on a CPU", file=sys.stderr)

            bar = tqdm(total=steps or None, initial=self.step, desc=f"{cfg.model}", unit="step", dynamic_ncols=True,
                       file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30)
        self._session_t0 = time.monotonic()
        deadline = self._session_t0 + minutes * 60 if minutes > 0 else math.inf
        acc = {}  # the current log interval: summed losses (on the device), steps, start time, images then

        def reset_interval() -> None:
            acc.update(sums={}, count=0, t_log=time.perf_counter(), nimg_at_log=self.nimg)

        reset_interval()
        stop_signal: list[int] = []

        def on_signal(signum, frame):
            # A polite stop (Ctrl-C, a scheduler's SIGTERM): finish the step in flight, checkpoint, exit. Raising
            # here instead would leave a half-done step (D updated, G not) in the final checkpoint.
            if stop_signal and not self.world.active:  # asked twice: stop now, without the final checkpoint
                raise KeyboardInterrupt  # (under torchrun a scheduler and torchrun may both signal: no hurry)
            stop_signal.append(signum)

        handlers = {}
        if _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, on_signal)

        def log_interval(now: float) -> None:
            count = acc["count"]
            sums = acc["sums"]
            if self.world.active and sums:  # the interval's losses over every rank's shard
                total = dist.all_sum_(torch.stack([v.float().reshape(()) for v in sums.values()])) / self.world.size
                sums = dict(zip(sums, total))
            values = {k: round(v.item() / count, 5) for k, v in sums.items()}  # the only host sync
            values["img_per_s"] = round((self.nimg - acc["nimg_at_log"]) / (now - acc["t_log"]), 1)
            values["nimg"] = self.nimg
            if hasattr(self.recipe, "growth"):  # a growing run: the stage it has reached
                stage = self.recipe.schedule(self.nimg)
                values["resolution"], values["alpha"] = stage.resolution, round(stage.alpha, 4)
            if dist.any_rank(not all(math.isfinite(v) for v in values.values())):
                raise Diverged(self.step)  # rolled back by the loop: nothing non-finite reaches the log
            log.log(self.step, values)
            if bar is not None:
                bar.set_postfix({k.split("/")[-1] if k.startswith("loss") else k: v
                                 for k, v in values.items() if k != "nimg"}, refresh=False)
            warn(self.health.observe_log(self.step, values))
            reset_interval()

        def warn(messages: list[str]) -> None:
            for m in messages:
                log.log(self.step, {"warning": m})
                text = f"warning at step {self.step}: {m}"
                if bar is not None:
                    bar.write(text, file=sys.stderr)
                elif self.progress:
                    print(text, file=sys.stderr)

        self._acc = acc
        s.G.train()
        s.D.train()
        if self._shared(self._newest_quietly() if self.world.main else None) is None:  # a divergence before any
            # checkpoint goes back to this
            self._initial = self._capture()
        stop_reason = None
        try:
            while True:
                try:
                    stop_reason = None
                    stop_reason = self._steps(steps, deadline, stop_signal, log_interval, warn, log, bar)
                    # Every run ends with a checkpoint, whatever ended it (steps, minutes, Ctrl-C, SIGTERM), and
                    # never with a non-finite one.
                    self.save()
                    break
                except Diverged as d:
                    message = self.roll_back(d.step)
                    log.rewind(self.step)
                    warn([message])
                    reset_interval()
                    if bar is not None:
                        bar.n = self.step
                        bar.refresh()
            if self.world.active:  # every rank got here together: the promise of data parallelism, checked exactly
                self._check_ranks_identical(log, warn)
        finally:
            if bar is not None:
                bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            log.close()
        if not self.world.main:
            return {"run_dir": str(self.run_dir), "step": self.step, "stopped_by": stop_reason,
                    "signal": stop_signal[0] if stop_signal else None, "rank": self.world.rank}
        grid = self.run_dir / "samples" / f"step_{self.step:08d}.png"
        if not grid.exists():
            self.write_samples()
        gif = build_progress_gif(self.run_dir / "samples", meta=self.provenance())
        return {"run_dir": str(self.run_dir), "step": self.step, "stopped_by": stop_reason,
                "signal": stop_signal[0] if stop_signal else None,
                "checkpoint": str(self._newest_quietly()),
                "samples": str(grid), "progress_gif": str(gif) if gif else None}

    def _check_ranks_identical(self, log, warn) -> None:
        """G and D whole, and G_ema's parameters (its BatchNorm statistics are recalibrated on rank 0 alone, for
        the samples and checkpoints only it writes), the same to the bit on every rank; logged, warned if not."""
        named = {f"{n}.{k}": v for n, net in self._nets().items()
                 for k, v in (net.named_parameters() if n == "G_ema" else net.state_dict().items())}
        off = dist.differing(named)
        log.log(self.step, {"dist/weights_identical": int(not off), "dist/world_size": self.world.size})
        if off:
            warn([f"the ranks' weights differ at the end of the run ({', '.join(off[:4])}"
                  f"{' ...' if len(off) > 4 else ''}): a bug, please report it"])

    def _newest_quietly(self) -> Path | None:
        """The newest readable checkpoint (header only), without repeating the resume's warning about damaged
        ones."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return newest_checkpoint(self.run_dir, whole=False)

    def _inputs(self, batch_size: int, batch: dict) -> dict:
        """G's inputs for this step. Under torchrun, latent models draw them for the global batch (following the
        global batch's labels) from the generator every rank shares and keep their slice: the ranks together
        take exactly the inputs one process would; a translator's input is its own shard's sources."""
        w = self.world
        if not w.active or translates(self.recipe):
            return self.recipe.inputs(batch_size, self.z_gen, batch)
        labels = self.batches.global_labels
        full = self.recipe.inputs(batch_size * w.size, self.z_gen, {} if labels is None else {"label": labels})
        return _take(full, w.shard(batch_size * w.size), batch_size * w.size)

    def _steps(self, steps: int, deadline: float, stop_signal: list, log_interval, warn, log, bar) -> str:
        """Train until `steps`, the deadline or a signal; returns what stopped it. Divergence (a non-finite loss
        since the last check, or weights at a checkpoint) raises Diverged at the next log, sample, evaluation or
        checkpoint: the loop rolls back."""
        s, t, acc = self.s, self.cfg.train, self._acc
        n_health = min(len(self.data), t.sample_grid)
        sgd = t.optimizer == "sgd"
        while self.step < steps or not steps:
            # under torchrun a signal or the deadline on any rank stops all, at the same step
            interrupted, late = dist.any_ranks([bool(stop_signal), time.monotonic() >= deadline])
            if interrupted:
                return "interrupted"
            if late:
                return "minutes"
            sched = self.recipe.schedule(self.nimg)
            batch = self.batches.next(sched.resolution, sched.batch_size)
            # G's inputs are drawn on the CPU whatever the device: the same latents everywhere, and a resume may
            # move a run between devices.
            inputs = to_device(self._inputs(sched.batch_size, batch), s.device)
            if sgd:
                adjust_sgd(s.opt, self.cfg, self.step, self.nimg, s.lr_scale)
            out = s.train_step(batch, inputs, self.step, sched)
            sums = acc["sums"]
            for k, v in out.items():
                sums[k] = sums[k] + v if k in sums else v
            acc["count"] += 1
            self.step += 1
            shown = sched.batch_size * self.world.size  # the global batch
            self.nimg += shown
            if self.ema is not None:
                self.ema.update(self.nimg, shown)
            if bar is not None:
                bar.update(1)
            if self.step % t.log_every == 0:
                self._check_finite()
                log_interval(time.perf_counter())
            if t.sample_every and self.step % t.sample_every == 0:
                self._check_finite()
                if self.world.main:
                    real = self._real_for_health(n_health, sched.resolution)
                    values, msgs = self.health.observe_samples(self.write_samples(), real)
                    log.log(self.step, values)
                    warn(msgs)
            if t.eval_every and self.step % t.eval_every == 0:  # before the checkpoint: it records best_fid
                self._check_finite(weights=True)  # a diverged G never becomes `best`
            if t.eval_every and self.step % t.eval_every == 0 and self.world.main:  # rank 0 evaluates
                try:
                    ev = self.evaluate()
                except Exception as e:  # never lose a run to its evaluation: warn and go on
                    ev = {"values": {}, "warnings": [f"evaluation failed, skipped: {type(e).__name__}: {e}"],
                          "extractor": None}
                log.log(self.step, ev["values"])
                warn(ev["warnings"])
                fid = ev["values"].get("eval/fid")
                if fid is not None and fid < self.best_fid:
                    self.best_fid = fid
                    self.save_best()
                if bar is not None and fid is not None:
                    bar.write(f"step {self.step}: FID {fid:.4g} ({ev['extractor']}), best {self.best_fid:.4g}",
                              file=sys.stderr)
            if self.step % t.checkpoint_every == 0:
                self.save()
        if acc["count"]:  # the last partial interval
            self._check_finite()
            log_interval(time.perf_counter())
        return "steps"


def _take(inputs: dict, part: slice, n: int) -> dict:
    """The samples `part` of G's inputs for n (tensors and lists of tensors with n rows; others as they are)."""
    out = {}
    for k, v in inputs.items():
        if torch.is_tensor(v) and v.ndim > 0 and len(v) == n:
            out[k] = v[part]
        elif isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]) and len(v[0]) == n:
            out[k] = [t[part] for t in v]
        else:
            out[k] = v
    return out


class _NullLog:
    """The metrics log of a rank other than 0: it writes nothing."""

    def log(self, step: int, values: dict) -> None:
        pass

    def rewind(self, step: int) -> None:
        pass

    def close(self) -> None:
        pass


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT}


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ------------------------------------------------------------------------------------------ entry point

def load_training_data(cfg: RunConfig) -> ImageData:
    """The run's data, with what its recipe needs; resolves arch.num_classes = -1 (as many as the data has) and
    -2 (as many as it has, or unconditional when it has none)."""
    spec = get_model(cfg.model)
    needs = RECIPES[spec.recipe].needs(cfg)
    d = cfg.data
    data = load_data(d.name, d.resolution, channels=d.channels or None, needs=needs, stream=d.stream,
                     memory_mb=d.memory_mb, direction=d.direction)
    check_data(cfg, data, needs)
    return data


def check_data(cfg: RunConfig, data: ImageData, needs: set[str]) -> None:
    missing = set(needs) - data.provides
    if "label" in missing:
        where = ("this folder has no class subfolders" if Path(data.source).is_dir() and data.report is not None
                 else f"{data.name} has no labels")
        raise GanforgeError(f"{cfg.model} with class conditioning (--class-conditional, arch.num_classes) needs "
                            f"labels; {where}")
    if missing:
        raise GanforgeError(f"{cfg.model} needs {', '.join(sorted(missing))} in every batch; {data.name} provides "
                            f"only {', '.join(sorted(data.provides))}")
    k = getattr(cfg.arch, "num_classes", 0)
    if k == -2:  # conditional where the data has classes (SAGAN's default), else unconditional
        k = -1 if data.labels is not None and len(data.classes) > 1 else 0
        cfg.arch.num_classes = k
    if k == -1:
        cfg.arch.num_classes = k = len(data.classes)
    if k and data.labels is not None and len(data.classes) > k:
        raise GanforgeError(f"arch.num_classes is {k} but {data.name} has {len(data.classes)} classes")


def train(cfg: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
          data: ImageData | None = None) -> dict:
    """Train (or continue) the run in `run_dir`; returns where its checkpoint and pictures are."""
    from .budget import check_training

    run_dir = Path(run_dir)
    # an impossible request (a 65536px model, a batch of millions) is refused before the data is read
    check_training(cfg, cfg.data.channels or (data.channels if data is not None else None), pick_device(cfg.train.device))
    torch.manual_seed(cfg.train.seed)
    if data is None:
        data = load_training_data(cfg)
    else:
        check_data(cfg, data, RECIPES[get_model(cfg.model).recipe].needs(cfg))
    trainer = Trainer(cfg, run_dir, data, progress=progress)  # before touching the disk: a bad config leaves nothing
    if cfg.train.eval_every:
        _check_evaluation(cfg)
    main = trainer.world.main  # under torchrun, rank 0 owns the run directory; the others only read it
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir) if main else contextlib.nullcontext():
        if resume:
            ckpt = trainer._shared(newest_checkpoint(run_dir) if main else None)
            if ckpt is not None:
                trainer.restore(ckpt)
                if progress and main:
                    print(f"resuming {run_dir} from step {trainer.step} ({ckpt.name})", file=sys.stderr)
            elif list_checkpoints(run_dir):
                raise GanforgeError(f"--resume: no checkpoint in {run_dir / 'checkpoints'} can be read; refusing to "
                                    f"start over on top of them (move them away to start afresh)")
            else:
                trainer.resumed_from = 0  # killed before its first checkpoint: start over, dropping its logs
        if main:
            cleanup_temporaries(run_dir)
            atomic_write_bytes(run_dir / "config.yaml", config_mod.to_yaml(cfg).encode())
        dist.barrier()
        return trainer.run(cfg.train.steps, cfg.train.minutes)


def _check_evaluation(cfg: RunConfig) -> None:
    """--eval-every: fail now, not an hour into training, when the feature extractor cannot be had."""
    from ..metrics.evaluate import METRICS
    from ..metrics.extractors import EXTRACTORS, require_extractor

    metrics = [m for m in cfg.train.eval_metrics.split(",") if m]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or "fid" not in metrics:
        raise GanforgeError(f"train.eval_metrics must list fid (it picks the best checkpoint) and only "
                            f"{', '.join(METRICS)}; got {cfg.train.eval_metrics!r}")
    name = cfg.train.eval_extractor
    if name and name not in EXTRACTORS:
        raise GanforgeError(f"unknown train.eval_extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    require_extractor(name, cfg.data.name)
