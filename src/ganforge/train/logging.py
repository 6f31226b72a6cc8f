"""Where numbers go: metrics.jsonl (one JSON object per logged step) and TensorBoard."""
from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: int | None):
        self.run_dir = Path(run_dir)
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            # A run killed after its last checkpoint logged steps that the resumed run will log again; a kill
            # in the middle of a write leaves a partial last line.
            from .checkpoint import atomic_write_bytes

            kept = []
            for ln in self.path.read_text().splitlines():
                try:
                    if json.loads(ln).get("step", 0) <= resume_step:
                        kept.append(ln)
                except (json.JSONDecodeError, AttributeError):
                    continue
            atomic_write_bytes(self.path, "".join(ln + "\n" for ln in kept).encode())
        self.file = open(self.path, "a")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)
        except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
            pass

    def log(self, step: int, values: dict) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def rewind(self, step: int) -> None:
        """Drop what was logged after `step` (a run rolled back to its checkpoint of that step)."""
        self.close()
        self.__init__(self.run_dir, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
