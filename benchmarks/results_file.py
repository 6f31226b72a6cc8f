"""One JSON file of results per benchmark, merged under a lock: benchmark processes that run side by side
(each on one core, so that the settings they compare share the machine alike) never lose each other's rows."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path


def merge_result(path: Path, key: str, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        results[key] = entry
        path.write_text(json.dumps(results, indent=1) + "\n")
