"""Shared fixtures: every test runs with its own data cache, no system data and no downloads, so the suite
means the same on any machine. Tiny model configs (16px, few channels) keep it fast."""
from __future__ import annotations

import contextlib
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
    # widths 16, 16, 8 at 4, 8, 16px; 1k-image phases: the learning test (600 steps of 16) grows 4 -> 8 -> 16px
    # by image 4000 and trains at 16px for the remaining 350 steps
    "progan": {"arch": {"fmap_base": 64, "fmap_max": 16, "z_dim": 16},
               "recipe": {"stable_kimg": 1.0, "fade_kimg": 1.0}},
    # widths 16, 16, 8 at 4, 8, 16px; 16-d z and w, a 2-layer mapping; the regularisers' intervals as the paper's
    # stylegan: the paper's style mixing 0.9, which its CPU preset switches off
    "stylegan": {"arch": {"fmap_base": 64, "fmap_max": 16, "z_dim": 16, "w_dim": 16, "mapping_layers": 2},
                 "recipe": {"stable_kimg": 1.0, "fade_kimg": 1.0, "start_resolution": 4, "batch_sizes": "",
                            "mixing": 0.9}},
    # stylegan2: the paper's regularisers (style mixing 0.9, path length 2), which its CPU preset switches off
    "stylegan2": {"arch": {"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16, "mapping_layers": 2},
                  "recipe": {"mixing": 0.9, "pl_weight": 2.0}},
    # G 32, 16, 8 channels at 4, 8, 16px, D 8, 16, 16; attention at 8px in both. Unconditional unless a test asks
    # (SAGAN's default, -2, follows the data, and the test data sets have labels)
    "sagan": {"arch": {"ch": 8, "z_dim": 16, "num_classes": 0}},
    # U-Net 4, 8, 16, 32 channels down to 1x1; PatchGAN 16px patches; on edges2fashion (made from the test's
    # synthetic Fashion-MNIST): a translator trains on pairs
    "pix2pix": {"arch": {"ngf": 4, "ndf": 4}, "data": {"name": "edges2fashion"}},
}


def translates(model: str) -> bool:
    """Whether a registered model translates images (its recipe needs a source image in every batch)."""
    from ganforge.registry import get_model

    return get_model(model).recipe == "paired"


def conditional_variants(models: list[str]) -> list[tuple[str, int]]:
    """(model, num_classes) pairs: every model unconditional, plus its class-conditional form where its
    family has one (10 classes, as the synthetic Fashion-MNIST)."""
    from ganforge.registry import get_model

    out = []
    for m in models:
        out.append((m, 0))
        if hasattr(get_model(m).config_cls(), "num_classes"):
            out.append((m, 10))
    return out


def patterns_data(copies: int = 64, resolution: int = 16, paired: bool = False):
    """Four fixed grey 16x16 patterns (bars, a square, a diagonal band), `copies` of each: a dataset a GAN
    learns in seconds. Returns (ImageData, patterns as floats [4, 1, R, R] in [-1, 1]). `paired`: each pattern
    is the target of its negative (a translator's pairs: source = 255 - image)."""
    import torch

    from ganforge.data.sources import ImageData, to_unit_range

    r = resolution
    p = torch.zeros(4, 1, r, r, dtype=torch.uint8)
    q = r // 4
    p[0, 0, q: 2 * q, :] = 255                      # a horizontal bar
    p[1, 0, :, 2 * q: 3 * q] = 255                  # a vertical bar
    p[2, 0, q: 3 * q, q: 3 * q] = 255               # a square
    idx = torch.arange(r)
    p[3, 0] = ((idx[:, None] - idx[None, :]).abs() < q // 2 + 1).to(torch.uint8) * 255  # a diagonal band
    images = p.repeat(copies, 1, 1, 1)
    labels = torch.arange(4).repeat(copies)
    fields = {"image": images, **({"source": 255 - images} if paired else {})}
    data = ImageData("patterns", "tests", fields=fields, labels=labels, classes=("h", "v", "sq", "diag"))
    return data, to_unit_range(p)


def tiny_layers(model: str, steps: int = 4, **train) -> list[dict]:
    base = {"data": {"resolution": 16},
            "train": {"steps": steps, "batch_size": 8, "log_every": 2, "sample_every": 2, "checkpoint_every": 2,
                      "sample_grid": 4, **train}}
    return [base, TINY[model]]


def steps_that_return(s, key: str, steps: int, resolution: int, generator) -> list[int]:
    """Which of `steps` training steps of a built run (loop.build) return the loss `key`: a lazy phase's
    schedule. Random batches of 8 at `resolution`, inputs from `generator`."""
    import torch

    from ganforge.recipes import to_device

    ran = []
    for step in range(steps):
        batch = {"image": torch.rand(8, 1, resolution, resolution, generator=generator) * 2 - 1}
        out = s.train_step(batch, to_device(s.recipe.inputs(8, generator, batch), s.device), step)
        if key in out:
            ran.append(step)
    return ran


def serve_runs(tmp_path_factory, models: list[str] | None = None) -> dict[str, Path]:
    """For the web page's tests: a 2-step run of each model (every registered one by default; tiny configs) and
    "csagan", a class-conditional sagan; {name: run dir}."""
    import ganforge
    from ganforge import config as C
    from ganforge.train.loop import train

    out = {}
    with synthetic_fashion(tmp_path_factory.mktemp("cache")):
        root = tmp_path_factory.mktemp("runs")
        for m in models or ganforge.list_models():
            train(C.resolve(m, tiny_layers(m, steps=2)), root / m, progress=False)
            out[m] = root / m
        layers = tiny_layers("sagan", steps=2) + [{"arch": {"num_classes": 10}}]
        train(C.resolve("sagan", layers), root / "csagan", progress=False)
        out["csagan"] = root / "csagan"
    return out


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


SYNTHETIC_ENV = ("GANFORGE_DATA", "GANFORGE_SYSTEM_DATA", "GANFORGE_NO_DOWNLOAD")


@contextlib.contextmanager
def synthetic_fashion(cache: Path):
    """For module-scoped fixtures (monkeypatch is per test): synthetic Fashion-MNIST in `cache`, and the
    environment pointing at it with no system data and no downloads, restored afterwards. Yields the env."""
    write_idx(cache / "fashion-mnist")
    env = {"GANFORGE_DATA": str(cache), "GANFORGE_SYSTEM_DATA": "", "GANFORGE_NO_DOWNLOAD": "1"}
    old = {k: os.environ.get(k) for k in SYNTHETIC_ENV}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def run_main(argv, capsys):
    """cli.main in this process (what the console script runs): its exit status and output."""
    from types import SimpleNamespace

    from ganforge.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out, stderr=err)


def assert_one_line_error(proc, *needles):
    """Exit status 2 and one line on stderr starting with "ganforge", holding every needle; no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganforge") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
