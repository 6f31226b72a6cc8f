"""`train.compile`: torch.compile for G and D where it pays, measured per model (docs/benchmarks.md, "torch.compile").

Values: `off`; `G`, `D` or `all` (both; `on` says the same), on request; `auto` (the default): only where real
runs on that kind of device showed more images for the same minutes, compile time included: the table `AUTO`
below, empty so far (on a CPU it did not pay; on a GPU it has not been measured: scripts/gpu_check.sh).

How the networks are compiled, so that nothing else changes:
- in place (`nn.Module.compile`): the module, its parameters and its state dict keys are the same objects and
  names as eager, so checkpoints, the EMA copy, torchrun's gradient averaging and `ganforge.load` do not see it;
- with static shapes (`dynamic=False`): a graph per batch size (a growing run's stage), each a function of its
  inputs alone; style mixing's crossover layer reaches G as a tensor in training (models/style.py), so it is
  not one graph per layer. PyTorch's automatic dynamic shapes would switch a graph to a symbolic one after
  the first change, and that graph computes in another order: a resumed run, starting afresh, would then round
  differently from the unbroken one, and resume would no longer be bit-exact. The recompile limit is raised to
  cover a growing run's stages (each with D trained and D frozen), and reaching it is an error, not a silent
  fallback to eager for some calls;
- gradient penalties (R1, WGAN-GP) and path length run their network eagerly (`eager()`): they differentiate
  through a gradient (create_graph=True), and torch.compile's backward does not support a double backward;
- a fading-in network reads alpha from its `growth_state` buffer under compilation (models/growing.py), so the
  fade, which changes alpha every step, does not recompile every step.
"""
from __future__ import annotations

import torch

from ..registry import GanforgeError

CHOICES = ("auto", "off", "on", "G", "D", "all")

# (device type, model) -> (networks, minimum train.minutes): what `auto` compiles. A network is listed only where
# compiling it made real runs show more images in the same minutes (benchmarks/compile_runs.py), compile time
# included; docs/results/compile.json holds the figures, docs/benchmarks.md "torch.compile: where it pays" shows
# them. Nothing is listed. On this project's 2-core CPU the best in-process figure, stylegan2's G at 64px (x1.13
# in benchmarks/compile_speed.py, 73 s to compile), did not carry over to real 15-minute runs: 0.89 times the
# eager run's images alone with 2 threads (steady speed x0.94), 0.96 with 1 thread beside another run. The other
# models gained at most a few percent in process, within the noise, or lost (stylegan2's D x0.69 at 64px), and
# the growing ones compile again at every stage. On a GPU nothing has been measured yet (scripts/gpu_check.sh,
# step 7). An entry reads: ("cpu", "stylegan2"): ("G", 15.0).
AUTO: dict[tuple[str, str], tuple[str, float]] = {}


def networks(cfg, device: torch.device) -> tuple[str, ...]:
    """The networks ("G", "D") the run compiles."""
    value = cfg.train.compile
    if value == "auto":
        nets, min_minutes = AUTO.get((device.type, cfg.model), ("off", 0.0))
        if nets == "off" or cfg.train.minutes < min_minutes:
            return ()
        value = nets
    return {"off": (), "G": ("G",), "D": ("D",), "all": ("G", "D"), "on": ("G", "D")}[value]


def check(cfg) -> None:
    if cfg.train.compile not in CHOICES:
        raise GanforgeError(f"train.compile must be one of {', '.join(CHOICES)}, got {cfg.train.compile!r}")


def _spectral_norm(net: torch.nn.Module) -> bool:
    from torch.nn.utils.parametrize import is_parametrized

    return any(is_parametrized(m) and any("SpectralNorm" in type(p).__name__ for ps in m.parametrizations.values()
                                          for p in ps) for m in net.modules())


def apply(cfg, G: torch.nn.Module, D: torch.nn.Module, device: torch.device) -> tuple[str, ...]:
    """Compile the run's networks in place; returns which. `auto` is resolved here, in the run's config (saved in
    config.yaml and every checkpoint), so a resume compiles what the run compiled, whatever its session's length:
    compiled and eager steps round differently, and resume must be bit-exact."""
    which, asked = networks(cfg, device), cfg.train.compile
    cfg.train.compile = {(): "off", ("G",): "G", ("D",): "D", ("G", "D"): "all"}[which]
    if not which:
        return ()
    if "D" in which and _spectral_norm(D):
        raise GanforgeError(
            f"train.compile={asked}: {cfg.model}'s D is spectrally normalised, and D scores two batches "
            "before one backward; the power iteration then updates, in place, a vector the first backward needs, "
            "which torch.compile's backward does not allow. Compile G alone: train.compile=G")
    import torch._dynamo

    # for the whole process: G and D share one compiled entry (nn.Module's call), so one limit; and past it, dynamo
    # would silently run some calls eagerly, which ones depending on the process's history: an error instead
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    for name in which:
        (G if name == "G" else D).compile(dynamic=False)
    return which


def eager():
    """A context in which compiled modules run their eager code (for double backward: gradient penalties)."""
    return torch.compiler.set_stance("force_eager")
