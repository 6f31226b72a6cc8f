"""Resuming continues the same run exactly: on CPU, stopped-and-resumed ends bit-identical to never stopped,
including after SIGKILL at any moment (also in the middle of writing a checkpoint)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganforge import config as C
from ganforge.train.checkpoint import list_checkpoints
from ganforge.train.loop import train

from conftest import tiny_layers


def weights(ckpt: Path) -> dict:
    return {k: v for k, v in load_file(str(ckpt)).items()}


def assert_identical(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not diff, f"resumed run differs in {diff[:5]}"


@pytest.mark.parametrize("model", ["gan", "dcgan"])
def test_stop_and_resume_is_bit_identical(model, fake_fashion, tmp_path):
    # gan has dropout (global RNG), dcgan has batch norm and channels_last: both kinds of state must resume.
    full = C.resolve(model, tiny_layers(model, steps=9, checkpoint_every=3, sample_every=4))
    train(full, tmp_path / "full", progress=False)
    part = C.resolve(model, tiny_layers(model, steps=5, checkpoint_every=3, sample_every=4))
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 9
    train(part, tmp_path / "part", resume=True, progress=False)
    assert_identical(list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "part")[-1])
    # and it is not trivially equal: a different seed gives different weights
    other = C.resolve(model, tiny_layers(model, steps=9, checkpoint_every=3, seed=1))
    train(other, tmp_path / "other", progress=False)
    with pytest.raises(AssertionError):
        assert_identical(list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "other")[-1])


def _train_cmd(run: Path, steps: int, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "ganforge.cli", "train", "dcgan", "--data", "fashion-mnist", "--resolution", "16",
           "--steps", str(steps), "--batch-size", "8", "--checkpoint-every", "5", "--sample-every", "0",
           "--set", "arch.base_channels=4", "--set", "arch.z_dim=16", "--set", "train.log_every=5", "--quiet",
           "--out", str(run)]
    return cmd + (["--resume"] if resume else [])


def test_sigkill_at_any_moment_then_resume_is_bit_identical(fake_fashion, tmp_path):
    steps = 40
    ref = subprocess.run(_train_cmd(tmp_path / "ref", steps), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    reference = list_checkpoints(tmp_path / "ref")[-1]

    run = tmp_path / "killed"
    # Each checkpoint write sleeps 0.3 s between writing the temporary file and renaming it, so that kills land
    # inside writes as well as between them; the kill times sweep the run.
    env = {**os.environ, "GANFORGE_TEST_SLOW_WRITE": "0.3"}
    kills = 0
    for delay in (4.5, 1.2, 0.8, 2.0, 1.5, 3.0):
        proc = subprocess.Popen(_train_cmd(run, steps, resume=(run / "config.yaml").exists()), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        # whatever moment it died at, every listed checkpoint is whole
        for ckpt in list_checkpoints(run):
            weights(ckpt)
    assert kills >= 2, "the run finished before it could be killed; slow it down"
    fin = subprocess.run(_train_cmd(run, steps, resume=True), capture_output=True, text=True, timeout=300)
    assert fin.returncode == 0, fin.stderr
    assert_identical(reference, list_checkpoints(run)[-1])
    assert not list((run / "checkpoints").glob(".*tmp*")), "temporary files were left behind"
    steps_logged = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged)), "metrics.jsonl repeats steps after resume"


def test_interrupt_saves_a_checkpoint(fake_fashion, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(run, 100000), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list_checkpoints(run):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by interrupted" in out
    import re

    stopped_at = int(re.search(r"\(step (\d+), stopped by interrupted\)", out).group(1))
    assert stopped_at > 0
    # the newest checkpoint is the moment of the stop, not the last periodic one
    assert list_checkpoints(run)[-1].name == f"step_{stopped_at:08d}.safetensors"
