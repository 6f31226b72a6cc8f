"""The `ganforge` command, run for real in subprocesses (`python -m ganforge.cli`).

Each subprocess pays for importing torch (a few seconds), so independent commands run side by side in a
small thread pool, and the stages share module-scoped fixtures: one batch of bad-input commands, one tiny
training run that every later verb (sample, interpolate, export) works from.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import run_cli, translates, write_idx

WORKERS = max(2, min(4, os.cpu_count() or 2))


def env_for(cache: Path) -> dict:
    """The isolated environment of conftest's autouse fixture, spelled out (module-scoped fixtures run
    before it and their subprocesses must not see the machine's real data either)."""
    return {"GANFORGE_DATA": str(cache), "GANFORGE_SYSTEM_DATA": "", "GANFORGE_NO_DOWNLOAD": "1"}


def run_all(calls: dict[str, list[str]], env: dict, cwd: Path) -> dict:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {name: pool.submit(run_cli, *args, env=env, cwd=cwd) for name, args in calls.items()}
        return {name: f.result() for name, f in futures.items()}


def assert_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr


def assert_user_error(proc, *needles: str) -> str:
    """Exit status 2, exactly one non-empty line on stderr, no traceback; returns that line."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {proc.stderr!r}"
    line = lines[0]
    assert line.startswith("ganforge"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in: {line}"
    return line


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- no run needed

@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """Commands on a bare machine (no data anywhere), all run at once."""
    tmp = tmp_path_factory.mktemp("cli-bare")
    cache = tmp / "cache"
    cache.mkdir()
    (tmp / "not-a-run").mkdir()
    (tmp / "not-a-run" / "notes.txt").write_text("hello\n")
    (tmp / "notes.txt").write_text("not a checkpoint\n")
    calls = {
        "models": ["models"],
        "data-list": ["data", "list"],
        "dry-run": ["train", "dcgan", "--dry-run", "--steps", "7", "--set", "arch.base_channels=8",
                    "--out", str(tmp / "dry")],
        # bad input: a few through the real command; every case also runs in-process below
        **{case: args for case, args in bad_input_args(tmp).items() if case in REAL_COMMAND_CASES},
    }
    return SimpleNamespace(tmp=tmp, cache=cache, results=run_all(calls, env_for(cache), cwd=tmp))


def bad_input_args(tmp: Path) -> dict[str, list[str]]:
    return {
        "unknown-model": ["train", "nosuchmodel"],
        "missing-data": ["train", "dcgan", "--data", "/nonexistent/path", "--steps", "1"],
        "dataset-not-found": ["train", "dcgan", "--data", "fashion-mnist", "--steps", "1"],
        "steps-zero": ["train", "dcgan", "--steps", "0"],
        "steps-abc": ["train", "dcgan", "--steps", "abc"],
        "batch-negative": ["train", "dcgan", "--batch-size", "-1"],
        "unknown-key": ["train", "dcgan", "--set", "train.nope=1"],
        "wrong-type": ["train", "dcgan", "--set", "train.lr_g=abc"],
        "sample-not-a-run": ["sample", str(tmp / "not-a-run"), "--out", str(tmp / "s1")],
        "sample-not-a-checkpoint": ["sample", str(tmp / "notes.txt"), "--out", str(tmp / "s2")],
        "interpolate-jpg": ["interpolate", str(tmp / "not-a-run"), "--out", str(tmp / "x.jpg")],
        "resume-without-out": ["train", "dcgan", "--resume"],
        "device-unknown": ["train", "dcgan", "--device", "gpu"],
        "resolution-not-power-of-two": ["train", "dcgan", "--resolution", "48"],
        "seed-too-large": ["train", "dcgan", "--seed", str(2**64)],
        "out-is-a-file": ["train", "dcgan", "--out", str(tmp / "notes.txt")],
        "nan-value": ["train", "dcgan", "--set", "train.ema_kimg=.nan"],
        "arch-zero": ["train", "gan", "--set", "arch.d_pieces=0"],
        "sample-device-unknown": ["sample", str(tmp / "not-a-run"), "--out", str(tmp / "s3"), "--device", "gpu"],
    }


# each subprocess costs a torch import: these go through the real command, the rest only in-process
REAL_COMMAND_CASES = ("unknown-model", "missing-data", "dataset-not-found", "unknown-key", "sample-not-a-run")

# case -> strings the one-line error must contain
BAD_INPUT = {
    "unknown-model": ["nosuchmodel", "dcgan", "gan"],
    "missing-data": ["/nonexistent/path"],
    "dataset-not-found": ["fashion-mnist", "apt-get install dataset-fashion-mnist"],
    "steps-zero": ["--steps", "0"],
    "steps-abc": ["--steps", "abc"],
    "batch-negative": ["--batch-size", "-1"],
    "unknown-key": ["train.nope"],
    "wrong-type": ["train.lr_g", "abc"],
    "sample-not-a-run": ["not-a-run"],
    "sample-not-a-checkpoint": ["notes.txt"],
    "interpolate-jpg": ["x.jpg", ".gif"],
    "resume-without-out": ["--resume", "--out"],
    "device-unknown": ["gpu"],
    "resolution-not-power-of-two": ["48", "power-of-two"],
    "seed-too-large": ["train.seed"],
    "out-is-a-file": ["notes.txt", "is a file"],
    "nan-value": ["train.ema_kimg"],
    "arch-zero": ["arch.d_pieces"],
    "sample-device-unknown": ["gpu"],
}


@pytest.mark.parametrize("case", REAL_COMMAND_CASES)
def test_bad_input_is_one_line_exit_2(bare, case):
    assert_user_error(bare.results[case], *BAD_INPUT[case])


def run_main(argv: list[str], capsys) -> SimpleNamespace:
    """cli.main in this process (what the console script runs), with its exit status and output."""
    from ganforge.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse exits by itself
        rc = e.code
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out, stderr=err)


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_in_process(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "notes.txt").write_text("hello\n")
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    assert_user_error(run_main(bad_input_args(tmp_path)[case], capsys), *BAD_INPUT[case])
    assert not (tmp_path / "runs").exists()


def test_data_list_finds_installed_data(fake_fashion, capsys):
    proc = run_main(["data", "list"], capsys)
    assert proc.returncode == 0
    line = next(line for line in proc.stdout.splitlines() if line.startswith("fashion-mnist"))
    assert str(fake_fashion) in line and "not found" not in line


def test_failed_train_leaves_no_run_directory(bare):
    # missing data / dataset not found / bad config: nothing is created under the default runs/
    assert not (bare.tmp / "runs").exists()
    assert not (bare.tmp / "s1").exists()


def test_dataset_not_found_lists_the_cache(bare):
    line = assert_user_error(bare.results["dataset-not-found"])
    assert str(bare.cache / "fashion-mnist") in line


def test_models_lists_families_with_papers(bare):
    from ganforge.registry import get_model

    proc = bare.results["models"]
    assert_ok(proc)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert set(__import__("ganforge").list_models()) <= set(rows)
    assert "Goodfellow" in rows["gan"] and "2014" in rows["gan"]
    assert "Radford" in rows["dcgan"] and "1511.06434" in rows["dcgan"]
    assert "Karras" in rows["progan"] and "1710.10196" in rows["progan"] and "1024" in rows["progan"]
    for name in __import__("ganforge").list_models():
        assert get_model(name).paper in rows[name]


def test_data_list_not_found_on_bare_machine(bare):
    proc = bare.results["data-list"]
    assert_ok(proc)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("fashion-mnist"))
    assert "not found" in line
    assert "apt-get install dataset-fashion-mnist" in line


def test_dry_run_prints_config_and_creates_nothing(bare):
    proc = bare.results["dry-run"]
    assert_ok(proc)
    assert "model: dcgan" in proc.stdout
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"] == "dcgan"
    assert cfg["train"]["steps"] == 7 and cfg["arch"]["base_channels"] == 8
    assert not (bare.tmp / "dry").exists()
    assert not (bare.tmp / "runs").exists()


# ------------------------------------------------------------------------------------- a real run

TRAIN = ["train", "dcgan", "--data", "fashion-mnist", "--resolution", "16", "--steps", "4", "--batch-size", "8",
         "--set", "arch.base_channels=4", "--set", "train.sample_every=2", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run on synthetic Fashion-MNIST, then every verb that reads it, side by side."""
    tmp = tmp_path_factory.mktemp("cli-run")
    cache = tmp / "cache"
    write_idx(cache / "fashion-mnist")
    env = env_for(cache)
    run = tmp / "RUN"
    train = run_cli(*TRAIN, "--out", str(run), env=env, cwd=tmp)
    assert_ok(train)
    before = tree_digest(run)

    stage2 = run_all({
        "sample": ["sample", str(run), "--n", "5", "--out", str(tmp / "DIR")],
        "npz": ["sample", str(run), "--n", "5", "--format", "npz", "--out", str(tmp / "f.npz")],
        "gif": ["interpolate", str(run), "--out", str(tmp / "a.gif"), "--seeds", "0,1", "--steps", "3"],
        "png": ["interpolate", str(run), "--out", str(tmp / "a.png"), "--seeds", "0,1", "--steps", "3"],
        "export": ["export", str(run), "--out", str(tmp / "m.safetensors")],
        "retrain": [*TRAIN, "--out", str(run)],
    }, env, cwd=tmp)
    dir_before = tree_digest(tmp / "DIR") if (tmp / "DIR").is_dir() else {}
    stage3 = run_all({
        "sample-again": ["sample", str(run), "--n", "5", "--out", str(tmp / "DIR")],
        "sample-exported": ["sample", str(tmp / "m.safetensors"), "--n", "2", "--out", str(tmp / "D2")],
    }, env, cwd=tmp)
    return SimpleNamespace(tmp=tmp, cache=cache, run=run, train=train, before=before, dir_before=dir_before,
                           results={**stage2, **stage3})


def test_train_writes_a_complete_run(trained):
    run = trained.run
    assert "Traceback" not in trained.train.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "dcgan"
    assert cfg["data"]["name"] == "fashion-mnist" and cfg["data"]["resolution"] == 16
    assert cfg["train"]["steps"] == 4 and cfg["train"]["batch_size"] == 8
    assert cfg["train"]["sample_every"] == 2 and cfg["arch"]["base_channels"] == 4

    ckpts = sorted((run / "checkpoints").glob("*.safetensors"))
    assert ckpts and ckpts[-1].name == "step_00000004.safetensors"

    gif = run / "samples" / "progress.gif"
    assert gif.is_file()
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames >= 2  # grids at steps 2 and 4

    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert lines, "metrics.jsonl is empty"
    assert all("step" in row for row in lines)
    assert lines[-1]["step"] == 4
    assert any(k.startswith("loss/") for k in lines[-1])
    assert str(run) in trained.train.stdout


def test_new_run_into_existing_run_is_refused(trained):
    assert_user_error(trained.results["retrain"], str(trained.run), "--resume")
    assert tree_digest(trained.run) == trained.before  # nothing in the old run was touched


def test_sample_writes_pngs(trained):
    assert_ok(trained.results["sample"])
    out = trained.tmp / "DIR"
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(5)]
    with Image.open(pngs[0]) as im:
        assert im.size == (16, 16) and im.mode == "L"


def test_sample_again_is_refused_without_force(trained):
    assert_user_error(trained.results["sample-again"], "--force")
    assert trained.dir_before and tree_digest(trained.tmp / "DIR") == trained.dir_before


def test_sample_npz(trained):
    assert_ok(trained.results["npz"])
    with np.load(trained.tmp / "f.npz") as f:
        images = f["images"]
        assert images.dtype == np.uint8 and images.shape == (5, 16, 16, 1)
        assert f["z"].shape[0] == 5


def test_interpolate_gif_and_png(trained):
    assert_ok(trained.results["gif"])
    assert_ok(trained.results["png"])
    with Image.open(trained.tmp / "a.gif") as im:
        assert im.format == "GIF" and im.n_frames >= 2
    with Image.open(trained.tmp / "a.png") as im:
        assert im.format == "PNG"
        # one row of three 16px images with 2px padding: 56 x 20, scaled up by a whole factor
        assert im.width * 20 == im.height * 56


def test_export_then_sample_the_exported_file(trained):
    from ganforge.sampling import load
    from ganforge.viz import to_hwc_uint8

    assert_ok(trained.results["export"])
    model = trained.tmp / "m.safetensors"
    assert model.is_file()
    assert_ok(trained.results["sample-exported"])
    pngs = sorted((trained.tmp / "D2").glob("*.png"))
    assert len(pngs) == 2
    # the exported file samples exactly like the run it came from, and the PNGs hold those samples
    exported, original = load(model), load(trained.run)
    x = exported.sample(2, seed=0)
    assert np.array_equal(x.numpy(), original.sample(2, seed=0).numpy())
    expected = to_hwc_uint8(x)
    for i, p in enumerate(pngs):
        with Image.open(p) as im:
            np.testing.assert_array_equal(np.asarray(im), expected[i][:, :, 0])


# ------------------------------------------------------------------------------------- every registered model

def _tiny_train_args(model: str, out: Path, *extra: str) -> list[str]:
    from conftest import TINY

    sets = [f"{section}.{k}={v}" for section, values in TINY[model].items() for k, v in values.items()
            if not (k == "num_classes" and "--class-conditional" in extra)]  # the flag, not the tiny default
    return ["train", model, "--data", "fashion-mnist", "--resolution", "16", "--steps", "2", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--out", str(out), *[a for s in sets for a in ("--set", s)], *extra]


# a translator trains on pairs and translates (tests/test_pix2pix.py runs it through the CLI)
@pytest.mark.parametrize("model", [m for m in __import__("ganforge").list_models() if not translates(m)])
def test_every_model_trains_samples_and_takes_classes_through_the_cli(model, fake_fashion, tmp_path, capsys):
    from ganforge.registry import get_model

    plain, cond = tmp_path / "plain", tmp_path / "cond"
    assert run_main(_tiny_train_args(model, plain), capsys).returncode == 0
    # samples come at the run's resolution, whatever stage a growing model had reached (2 steps: 4px)
    assert run_main(["sample", str(plain), "--n", "2", "--format", "npz", "--out", str(tmp_path / "p.npz")],
                    capsys).returncode == 0
    with np.load(tmp_path / "p.npz") as f:
        assert f["images"].shape == (2, 16, 16, 1)
    # an unconditional model refuses --class with one clear line
    assert_user_error(run_main(["sample", str(plain), "--n", "2", "--class", "1", "--out", str(tmp_path / "x")],
                               capsys), "unconditional")
    assert not (tmp_path / "x").exists()
    if not hasattr(get_model(model).config_cls(), "num_classes"):  # a family without a class-conditional form
        assert_user_error(run_main(_tiny_train_args(model, cond, "--class-conditional"), capsys),
                          model, "no class-conditional form")
        assert not cond.exists()
        more = [a if a != "2" else "3" for a in _tiny_train_args(model, plain, "--resume")]
        proc = run_main(more, capsys)
        assert proc.returncode == 0, proc.stderr
        assert "(step 3," in proc.stdout
        return
    proc = run_main(_tiny_train_args(model, cond, "--class-conditional"), capsys)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load((cond / "config.yaml").read_text())
    assert cfg["arch"]["num_classes"] == 10  # "as many as the data has", resolved and saved
    for cls, out in (("1", "one"), ("Trouser", "trouser")):
        assert run_main(["sample", str(cond), "--n", "3", "--seed", "4", "--class", cls, "--format", "npz",
                         "--out", str(tmp_path / f"{out}.npz")], capsys).returncode == 0
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "trouser.npz") as b:
        assert a["labels"].tolist() == [1, 1, 1]
        np.testing.assert_array_equal(a["images"], b["images"])  # a class by name is the class by index
    assert_user_error(run_main(["sample", str(cond), "--n", "2", "--class", "10", "--out", str(tmp_path / "y")],
                               capsys), "out of range", "Ankle boot")
    assert_user_error(run_main(["sample", str(cond), "--n", "2", "--class", "Hat", "--out", str(tmp_path / "y")],
                               capsys), "unknown class", "Sneaker")
    assert run_main(["interpolate", str(cond), "--seeds", "0,1", "--steps", "2", "--class", "3",
                     "--out", str(tmp_path / "walk.png")], capsys).returncode == 0
    # the same command line again, with --resume and more steps, continues the run
    more = [a if a != "2" else "3" for a in _tiny_train_args(model, cond, "--class-conditional", "--resume")]
    proc = run_main(more, capsys)
    assert proc.returncode == 0, proc.stderr
    assert "(step 3," in proc.stdout


def test_classes_named_like_numbers_are_found_by_name(fake_fashion, tmp_path, capsys):
    import ganforge

    folder = tmp_path / "digits"
    for name, value in (("1", 30), ("3", 120), ("7", 220)):
        for i in range(4):
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16), value + i, np.uint8)).save(folder / name / f"{i}.png")
    args = ["train", "dcgan", "--data", str(folder), "--resolution", "16", "--steps", "1", "--batch-size", "4",
            "--class-conditional", "--set", "arch.base_channels=4", "--quiet", "--out", str(tmp_path / "run")]
    assert run_main(args, capsys).returncode == 0
    gen = ganforge.load(tmp_path / "run")
    assert gen.classes == ("1", "3", "7")
    assert gen.class_index("7") == 2 and gen.class_index("1") == 0 and gen.class_index(1) == 1


def test_ada_without_ops_is_an_error(capsys, tmp_path):
    assert_user_error(run_main(["train", "dcgan", "--set", "recipe.ada=true", "--out", str(tmp_path / "r")], capsys),
                      "recipe.augment")


def test_class_conditional_on_a_folder_without_classes_is_one_clear_error(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(folder / f"{i}.png")
    proc = run_main(["train", "dcgan", "--data", str(folder), "--resolution", "16", "--steps", "1",
                     "--class-conditional", "--out", str(tmp_path / "run")], capsys)
    assert_user_error(proc, "needs labels", "no class subfolders")
    assert not (tmp_path / "run").exists()


def test_out_folder_with_a_dot_is_a_folder_and_an_image_name_is_a_file(tmp_path):
    from ganforge.cli import _looks_like_file

    assert not _looks_like_file(tmp_path / "psi0.7")          # a folder named with a dot
    assert not _looks_like_file(tmp_path / "run.v2")
    assert _looks_like_file(tmp_path / "grid.png") and _looks_like_file(tmp_path / "s.NPZ")
    (tmp_path / "made.v2").mkdir()
    (tmp_path / "notes").write_text("x")
    assert not _looks_like_file(tmp_path / "made.v2") and _looks_like_file(tmp_path / "notes")
