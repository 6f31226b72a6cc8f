"""The run directory's rules: a new run never overwrites an old one, --resume may change only what is safe to
change, one trainer per directory, and leftovers of a crash are cleaned up."""
from __future__ import annotations

from pathlib import Path

from .. import config as config_mod
from ..config import RunConfig
from ..registry import GanforgeError
from .checkpoint import list_checkpoints, newest_checkpoint, read_header

OVERRIDABLE_ON_RESUME = {"train.steps", "train.minutes", "train.checkpoint_every", "train.sample_every",
                         "train.log_every", "train.keep_checkpoints", "train.device", "data.workers",
                         "train.dist_timeout_s", "train.compile"}


def saved_config(run_dir: Path) -> RunConfig:
    """The run's config: config.yaml, or (if that file was lost or damaged) the copy in its newest checkpoint."""
    cfg_path = run_dir / "config.yaml"
    try:
        return config_mod.from_dict(config_mod.read_yaml(cfg_path))
    except GanforgeError as first:
        ckpt = newest_checkpoint(run_dir)
        if ckpt is None:
            raise GanforgeError(f"--resume: {run_dir} holds no run ({first})") from None
        return config_mod.from_dict(read_header(ckpt)["config"])


def prepare_run(model: str, layers: list[dict], run_dir: Path, resume: bool) -> RunConfig:
    """Resolve the config and check the run directory: a new run never overwrites an old one."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GanforgeError(f"--out {run_dir} is a file, not a run directory")
    if resume:
        saved = saved_config(run_dir)
        if saved.model != model:
            raise GanforgeError(f"--resume: {run_dir} is a {saved.model!r} run, not {model!r}")
        asked = config_mod.resolve(model, layers)
        before, after = config_mod.flatten(saved.to_dict()), config_mod.flatten(asked.to_dict())
        explicit = set(config_mod.flatten(config_mod.merge_all(layers)))
        if "train.minutes" in explicit:
            explicit.add("train.steps")  # --minutes alone also lifts the step limit
        changed = [k for k in explicit if k in before and before[k] != after.get(k)]
        if after.get("arch.num_classes") == -1 and before.get("arch.num_classes", 0) > 0:
            changed.remove("arch.num_classes")  # --class-conditional again: the run already resolved it
        bad = [k for k in changed if k not in OVERRIDABLE_ON_RESUME]
        if bad:
            raise GanforgeError(f"--resume cannot change {', '.join(sorted(bad))} of the run in {run_dir} "
                                f"(only {', '.join(sorted(OVERRIDABLE_ON_RESUME))}); start a new run instead")
        config_mod.apply_dict(saved, config_mod.unflatten({k: after[k] for k in changed}))
        config_mod.validate(saved)
        return saved
    if run_dir.exists() and ((run_dir / "config.yaml").exists() or list_checkpoints(run_dir)):
        raise GanforgeError(f"{run_dir} already holds a run; continue it with --resume or pick another --out")
    return config_mod.resolve(model, layers)


class RunLock:
    """One process per run directory: two trainers resuming the same run would overwrite each other."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return self
        self.fd = open(self.path, "w")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fd.close()
            self.fd = None
            raise GanforgeError(f"{self.path.parent} is being trained by another process") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            self.fd.close()
        return False


def cleanup_temporaries(run_dir: Path) -> None:
    folder = Path(run_dir) / "checkpoints"
    if folder.is_dir():
        for p in folder.glob(".*.tmp-*"):
            p.unlink(missing_ok=True)
