"""Resuming continues the same run exactly: on CPU, stopped-and-resumed ends bit-identical to never stopped,
including after SIGKILL at any moment (also in the middle of writing a checkpoint)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ganforge import config as C
from ganforge.registry import list_models
from ganforge.train.checkpoint import list_checkpoints, read_header
from ganforge.train.loop import train

from conftest import tiny_layers


def weights(ckpt: Path) -> dict:
    return {k: v for k, v in load_file(str(ckpt)).items()}


def assert_identical(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not diff, f"resumed run differs in {diff[:5]}"


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


MODELS = list_models()
# what each run adds to the tiny config: nothing; or class labels and ADA-driven augmentation, whose p moves
# every step here (recipe state that a resume must restore, and random numbers it must replay)
EXTRAS = {"plain": [],
          "conditional-ada": [{"arch": {"num_classes": 10},
                               "recipe": {"augment": "color,translation,cutout", "ada": True, "ada_interval": 1,
                                          "ada_kimg": 0.1, "ada_target": 0.1}}],
          # a growing family grows 4 -> 8 -> 16px within the 9 steps of 8 images (two steps per phase): the
          # part run stops as 8px has stabilised and the resume starts 16px's fade-in (an optimiser reset)
          "growing": [{"recipe": {"stable_kimg": 0.016, "fade_kimg": 0.016}}],
          # ADA without classes, for the families that have no classes (the style-based ones)
          "ada": [{"recipe": {"augment": "color,translation,cutout", "ada": True, "ada_interval": 1,
                              "ada_kimg": 0.1, "ada_target": 0.1}}],
          # a fixed p, where ADA is refused (Progressive GAN's WGAN critic): random numbers a resume must replay,
          # across a resolution change (the growing schedule above)
          "diffaug": [{"recipe": {"augment": "color,translation,cutout", "augment_p": 0.5, "stable_kimg": 0.016,
                                  "fade_kimg": 0.016}}]}


def _takes(model: str, extra: str) -> bool:
    """Whether the family has every config key the extra sets and takes their values (Progressive GAN has no
    classes and refuses ADA); "ada" only where "conditional-ada" does not run, "diffaug" only where ADA is
    refused."""
    from ganforge.registry import GanforgeError

    cfg = C.new_config(model)
    if not all(hasattr(getattr(cfg, section), key) for layer in EXTRAS[extra] for section, values in layer.items()
               for key in values):
        return False
    try:
        C.resolve(model, tiny_layers(model) + EXTRAS[extra])
    except GanforgeError:
        return False
    if extra == "ada":
        return not _takes(model, "conditional-ada")
    if extra == "diffaug":
        return not _takes(model, "ada") and not _takes(model, "conditional-ada")
    return True


def test_the_augmented_resumes_cover_the_families_that_take_augmentation():
    # _takes drops a pair whose config is refused: a family that stopped taking ADA would lose its test silently
    for pair in (("stylegan", "ada"), ("stylegan2", "ada"), ("progan", "diffaug"), ("dcgan", "conditional-ada")):
        assert _takes(*pair), pair


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("model,extra", [(m, e) for m in MODELS for e in EXTRAS if _takes(m, e)])
def test_stop_and_resume_is_bit_identical(model, extra, device, fake_fashion, tmp_path):
    # gan has dropout (global RNG), dcgan has batch norm and channels_last: both kinds of state must resume.
    # On CUDA the promise needs train.deterministic (deterministic cuDNN kernels); on CPU it always holds.
    opts = {"device": device, "deterministic": device == "cuda"}
    layers = lambda steps, **kw: tiny_layers(model, steps=steps, checkpoint_every=3, sample_every=4, **opts,  # noqa
                                            **kw) + EXTRAS[extra]
    train(C.resolve(model, layers(9)), tmp_path / "full", progress=False)
    part = C.resolve(model, layers(5))
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 9
    train(part, tmp_path / "part", resume=True, progress=False)
    assert_identical(list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "part")[-1])
    if extra in ("conditional-ada", "ada"):  # the recipe state really moved, and went through the checkpoint
        header = read_header(list_checkpoints(tmp_path / "part")[-1])
        assert header["recipe_state"]["ada"]["p"] > 0
    # and it is not trivially equal: a different seed gives different weights
    train(C.resolve(model, layers(9, seed=1)), tmp_path / "other", progress=False)
    with pytest.raises(AssertionError):
        assert_identical(list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "other")[-1])


def test_a_schedule_that_changes_the_batch_size_counts_images_and_resumes_exactly(fake_fashion, tmp_path,
                                                                                  monkeypatch):
    from ganforge.recipes import Schedule
    from ganforge.recipes.unconditional import Unconditional

    def schedule(self, nimg):  # 8 images a step until 40 have been shown, then 4
        return Schedule(16, 8 if nimg < 40 else 4)

    monkeypatch.setattr(Unconditional, "schedule", schedule)
    layers = lambda steps: tiny_layers("dcgan", steps=steps, checkpoint_every=3, sample_every=0)  # noqa: E731
    train(C.resolve("dcgan", layers(9)), tmp_path / "full", progress=False)
    part = C.resolve("dcgan", layers(4))
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 9
    train(part, tmp_path / "part", resume=True, progress=False)
    full, resumed = list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "part")[-1]
    assert_identical(full, resumed)
    assert read_header(full)["nimg"] == 5 * 8 + 4 * 4  # the loop counts images shown, not steps x batch
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in rows if "nimg" in r][-1] == 56


def _class_folder(root: Path, n: int = 40) -> Path:
    """PNGs in two class subfolders, of mixed sizes and modes (grey, RGB, RGBA)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        cls = root / ("cats" if i % 2 else "dogs")
        cls.mkdir(parents=True, exist_ok=True)
        size = int(rng.integers(20, 40))
        arr = rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)
        mode = ("RGB", "L", "RGBA")[i % 3]
        img = Image.fromarray(arr).convert(mode)
        img.save(cls / f"{i:03d}.png")
    return root


def test_streamed_data_trains_exactly_like_in_memory_data_and_resumes_exactly(tmp_path):
    folder = _class_folder(tmp_path / "photos")
    layers = lambda steps, stream: tiny_layers("dcgan", steps=steps, checkpoint_every=3, sample_every=0) + [  # noqa
        {"data": {"name": str(folder), "stream": stream, "workers": 1}}]
    train(C.resolve("dcgan", layers(7, "never")), tmp_path / "memory", progress=False)
    train(C.resolve("dcgan", layers(7, "always")), tmp_path / "streamed", progress=False)
    # the same pixels in the same order, whether read at start or by DataLoader workers during training
    assert_identical(list_checkpoints(tmp_path / "memory")[-1], list_checkpoints(tmp_path / "streamed")[-1])
    part = C.resolve("dcgan", layers(4, "always"))
    train(part, tmp_path / "part", progress=False)  # 4 steps of 8 out of 40 images: resumes mid-epoch
    part.train.steps = 7
    train(part, tmp_path / "part", resume=True, progress=False)
    assert_identical(list_checkpoints(tmp_path / "memory")[-1], list_checkpoints(tmp_path / "part")[-1])


def _train_cmd(run: Path, steps: int, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "ganforge.cli", "train", "dcgan", "--data", "fashion-mnist", "--resolution", "16",
           "--steps", str(steps), "--batch-size", "8", "--device", "cpu", "--checkpoint-every", "5",
           "--sample-every", "3", "--set", "arch.base_channels=4", "--set", "arch.z_dim=16",
           "--set", "train.log_every=5", "--set", "train.sample_grid=4", "--quiet", "--out", str(run)]
    return cmd + (["--resume"] if resume else [])


def test_sigkill_or_sigterm_at_any_moment_then_resume_is_bit_identical(fake_fashion, tmp_path):
    steps = 40
    ref = subprocess.run(_train_cmd(tmp_path / "ref", steps), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    reference = list_checkpoints(tmp_path / "ref")[-1]

    run = tmp_path / "killed"
    # Each checkpoint write sleeps 0.3 s between writing the temporary file and renaming it, so that kills land
    # inside writes as well as between them; the stop times sweep the run. One stop is a polite SIGTERM, which
    # must finish the step in flight, checkpoint it and exit with 143.
    env = {**os.environ, "GANFORGE_TEST_SLOW_WRITE": "0.3"}
    kills, in_write, polite = 0, 0, False
    for delay, sig in ((4.5, signal.SIGKILL), (1.2, signal.SIGKILL), (2.5, signal.SIGTERM), (0.0, "in-write"),
                       (0.8, signal.SIGKILL), (2.0, signal.SIGKILL), (1.5, signal.SIGKILL), (3.0, signal.SIGKILL)):
        proc = subprocess.Popen(_train_cmd(run, steps, resume=(run / "config.yaml").exists()), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        metrics = run / "metrics.jsonl"
        lines_before = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        time.sleep(delay)
        give_up = time.time() + 60
        while sig == signal.SIGTERM and proc.poll() is None and time.time() < give_up:
            # a polite stop is only meaningful once training is under way (before that, nothing to save)
            if metrics.exists() and len(metrics.read_text().splitlines()) > lines_before:
                break
            time.sleep(0.05)
        while sig == "in-write" and proc.poll() is None and time.time() < give_up:
            if list((run / "checkpoints").glob(".*tmp*")):  # a checkpoint is half written right now
                proc.send_signal(signal.SIGKILL)
                in_write += 1
                break
            time.sleep(0.01)
        if proc.poll() is None and sig != "in-write":
            proc.send_signal(sig)
            kills += 1
        out, err = proc.communicate(timeout=120)
        if sig == signal.SIGTERM and kills and proc.returncode != 0:
            assert proc.returncode == 143, err
            stopped_at = int(re.search(r"\(step (\d+), stopped by interrupted\)", out).group(1))
            # the newest checkpoint is the moment of the stop, not the last periodic one
            assert list_checkpoints(run)[-1].name == f"step_{stopped_at:08d}.safetensors"
            polite = True
        # whatever moment it died at, every listed checkpoint is whole
        for ckpt in list_checkpoints(run):
            weights(ckpt)
    assert kills >= 3 and polite and in_write, "the run finished before it could be stopped; slow it down"
    fin = subprocess.run(_train_cmd(run, steps, resume=True), capture_output=True, text=True, timeout=300)
    assert fin.returncode == 0, fin.stderr
    assert_identical(reference, list_checkpoints(run)[-1])
    assert not list((run / "checkpoints").glob(".*tmp*")), "temporary files were left behind"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keyed = [(r["step"], tuple(sorted(r))) for r in rows]
    assert len(keyed) == len(set(keyed)), "metrics.jsonl repeats entries after resume"
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    assert (run / "samples" / "progress.gif").exists()


def test_resume_before_the_first_checkpoint_starts_clean(fake_fashion, tmp_path):
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=4, checkpoint_every=100, log_every=1))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss/D": 9}\n{"step": 2, "lo')  # a kill mid-write
    train(cfg, run, resume=True, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/D" in r] == [1, 2, 3, 4] and rows[0].get("loss/D") != 9


def test_pruning_keeps_the_newest_and_never_the_just_written(fake_fashion, tmp_path):
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=8, checkpoint_every=2, keep_checkpoints=2))
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    assert [p.name for p in list_checkpoints(run)] == ["step_00000006.safetensors", "step_00000008.safetensors"]
    # a newer, unreadable checkpoint (a disk fault) is skipped on resume and never costs us the good ones
    (run / "checkpoints" / "step_00000099.safetensors").write_bytes(b"garbage")
    cfg.train.steps, cfg.train.keep_checkpoints = 10, 1
    with pytest.warns(UserWarning, match="damaged checkpoint") as caught:
        train(cfg, run, resume=True, progress=False)
    assert len([w for w in caught if "damaged" in str(w.message)]) == 1  # said once, by the resume
    assert (run / "checkpoints" / "step_00000010.safetensors").exists()
    # only unreadable checkpoints: resuming refuses rather than starting over on top of them
    for p in list_checkpoints(run):
        p.write_bytes(b"garbage")
    from ganforge.registry import GanforgeError

    with pytest.warns(UserWarning), pytest.raises(GanforgeError, match="can be read"):
        train(cfg, run, resume=True, progress=False)


def test_minutes_bound_the_run_and_still_checkpoint(fake_fashion, tmp_path):
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=0, minutes=0.03, checkpoint_every=10**6,
                                         sample_every=0))
    assert cfg.train.steps == 0
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["stopped_by"] == "minutes" and result["step"] > 0
    assert list_checkpoints(tmp_path / "run")[-1].name == f"step_{result['step']:08d}.safetensors"
    assert (tmp_path / "run" / "samples" / f"step_{result['step']:08d}.png").exists()
    # --minutes alone (no --steps) lifts the default step limit
    assert C.resolve("dcgan", [{"train": {"minutes": 5}}]).train.steps == 0
    assert C.resolve("dcgan", [{"train": {"minutes": 5, "steps": 7}}]).train.steps == 7


def _tiny_cmd(model: str, run: Path, steps: int, resume: bool) -> list[str]:
    """A tiny run of `model` through the CLI, checkpointing every 3 steps and sampling every 4."""
    from conftest import TINY

    sets = [f"{section}.{k}={v}" for section, values in TINY[model].items() for k, v in values.items()]
    if model in ("progan", "stylegan"):  # grows 4 -> 8 -> 16px within the run: kills land in fade-ins too
        sets += ["recipe.stable_kimg=0.08", "recipe.fade_kimg=0.08"]
    data = "edges2fashion" if model == "pix2pix" else "fashion-mnist"
    cmd = [sys.executable, "-m", "ganforge.cli", "train", model, "--data", data, "--resolution", "16", "--steps",
           str(steps), "--batch-size", "8", "--device", "cpu", "--checkpoint-every", "3", "--sample-every", "4",
           "--set", "train.log_every=2", "--set", "train.sample_grid=4", "--quiet", "--out", str(run)]
    return cmd + [a for s in sets for a in ("--set", s)] + (["--resume"] if resume else [])


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_across_every_model_resume_bit_identical(tmp_path):
    """Three SIGKILLs per registered model (21 for 7 models) at seeded random moments, some inside checkpoint
    writes (each write is slowed by 0.2 s so that kills land in them), progan and stylegan in the middle of
    their growth; every run, resumed after each kill, ends bit-identical to the same run never stopped."""
    import random

    rng = random.Random(2026)
    env = {**os.environ, "GANFORGE_TEST_SLOW_WRITE": "0.2"}
    steps, total_kills, in_writes = 45, 0, 0
    for model in MODELS:
        ref = subprocess.run(_tiny_cmd(model, tmp_path / model / "ref", steps, False), capture_output=True, text=True,
                             timeout=600, env=env)
        assert ref.returncode == 0, ref.stderr
        run = tmp_path / model / "killed"
        kills = 0
        for attempt in range(12):
            if kills == 3:
                break
            proc = subprocess.Popen(_tiny_cmd(model, run, steps, (run / "config.yaml").exists()), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if attempt % 3 == 2:  # aim for a checkpoint write in progress
                give_up = time.time() + 60
                while proc.poll() is None and time.time() < give_up:
                    if list((run / "checkpoints").glob(".*tmp*")):
                        break
                    time.sleep(0.01)
            else:
                time.sleep(rng.uniform(2.5, 7.0))  # start-up (imports) is about 2.5 s here
            if proc.poll() is None:
                in_writes += bool(list((run / "checkpoints").glob(".*tmp*"))) if (run / "checkpoints").exists() else 0
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=120)
            for ckpt in list_checkpoints(run):  # whatever moment it died at, every listed checkpoint is whole
                weights(ckpt)
        fin = subprocess.run(_tiny_cmd(model, run, steps, True), capture_output=True, text=True, timeout=600,
                             env=env)
        assert fin.returncode == 0, fin.stderr
        assert_identical(list_checkpoints(tmp_path / model / "ref")[-1], list_checkpoints(run)[-1])
        total_kills += kills
    assert total_kills >= 20, f"only {total_kills} kills landed: the runs finished first"
    assert in_writes >= 1, "no kill landed inside a checkpoint write"
