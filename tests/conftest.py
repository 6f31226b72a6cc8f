"""Shared fixtures: every test runs with its own data cache, no system data and no downloads, so the suite
means the same on any machine. Tiny model configs (16px, few channels) keep it fast."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Per registered model: the smallest config that still exercises every layer type. A model without an
# entry here fails test_every_model_has_a_tiny_config, so a new model is tested as soon as it registers.
TINY = {
    "gan": {"arch": {"g_hidden": 32, "d_units": 16, "d_pieces": 2}},
    "dcgan": {"arch": {"base_channels": 4, "z_dim": 16}},
}


def tiny_layers(model: str, steps: int = 4, **train) -> list[dict]:
    base = {"data": {"resolution": 16},
            "train": {"steps": steps, "batch_size": 8, "log_every": 2, "sample_every": 2, "checkpoint_every": 2,
                      "sample_grid": 4, **train}}
    return [base, TINY[model]]


def write_idx(folder: Path, n: int = 96, split: str = "train", seed: int = 0, size: int = 28) -> Path:
    """Fashion-MNIST-shaped IDX files (gzipped, like the real ones): a bright blob per image on black, with
    ten labels, enough for models to fit and for loaders to parse."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for i in range(n):
        y, x = rng.integers(4, size - 12, 2)
        images[i, y: y + 8, x: x + 8] = 200 + labels[i] * 5
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{stems[0]}.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, size, size) + images.tobytes())
    with gzip.open(folder / f"{stems[1]}.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.tobytes())
    return folder


@pytest.fixture(autouse=True)
def isolated_data(request, tmp_path_factory, monkeypatch):
    if request.node.get_closest_marker("slow"):  # slow tests use the machine's real data
        return None
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GANFORGE_DATA", str(cache))
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", "")
    monkeypatch.setenv("GANFORGE_NO_DOWNLOAD", "1")
    return cache


@pytest.fixture
def fake_fashion(isolated_data) -> Path:
    """Synthetic IDX files installed as `fashion-mnist` in the test's cache."""
    return write_idx(isolated_data / "fashion-mnist")


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the real `ganforge` command in a subprocess (python -m ganforge.cli)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganforge.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
