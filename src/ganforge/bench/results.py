"""One JSON file of results per benchmark, merged under a lock: benchmark processes that run side by side
(each on one core, so that the settings they compare share the machine alike) never lose each other's rows."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Callable


def update_results(path: Path, change: Callable[[dict], dict]) -> None:
    """Read the file's results (a dict; {} when there is none), apply `change`, write them back, all under
    the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(change(results), indent=1) + "\n")


def merge_result(path: Path, key: str, entry: dict) -> None:
    update_results(path, lambda results: {**results, key: entry})


def speed_entries(data: dict) -> dict:
    """docs/results/speed.json as {key: row}, each row with its own command, date, torch and peak. Reads the
    older layout too (one command's {"peak", "results": [rows], "torch", "date", "command"})."""
    if isinstance(data.get("results"), list):
        common = {k: data.get(k) for k in ("peak", "torch", "date", "command")}
        return {speed_key(r): {**r, **common} for r in data["results"]}
    return data


def speed_key(row: dict) -> str:
    key = f"{row['model']}/{row['resolution']}px/c{row.get('channels', 1)}/b{row['batch']}"
    return key + (f"/alpha{row['alpha']:g}" if row.get("alpha", 1.0) < 1 else "")
