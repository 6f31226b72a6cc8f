"""torchrun: 2 CPU processes (gloo) train every registered model; their weights stay identical, and match one
process trained on the same global batch; a rank that dies takes the job down with a clear error, no hang."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.train.checkpoint import newest_checkpoint, read_tensors
from ganforge.train.loop import train

from conftest import TINY, synthetic_fashion, tiny_layers

MODELS = ganforge.list_models()
STEPS, PER_RANK = 3, 4
# Plain SGD (no momentum), so that each step moves the weights by the averaged gradient itself (Adam's first
# steps move every weight by about lr whatever the batch: they would hide a wrong shard), and in-step noise off
# where a model has it (dropout, the path-length penalty's noise); BatchNorm over the global batch
# (train.sync_batchnorm), as one process has it. Minibatch stddev off for the R1 models: its groups are a
# rank's shard's, not the global batch's, and a lazy R1 weighted 16 times magnifies that gap through its double
# backward. What still differs: each rank draws its own WGAN-GP mixing, and progan's minibatch-stddev groups.
SGD = {"train": {"optimizer": "sgd", "betas": [0.0, 0.999], "lr_g": 0.01, "lr_d": 0.01, "precision": "fp32"}}
EXACT = {"gan": {"arch": {"d_dropout": 0.0, "d_input_dropout": 0.0}}, "pix2pix": {"arch": {"dropout": 0.0}},
         "stylegan2": {"recipe": {"pl_weight": 0.0}, "arch": {"mbstd_group": 0}},
         "stylegan": {"arch": {"mbstd_group": 0}}}


def _sets(layers: list[dict]) -> list[str]:
    out = []
    for layer in layers:
        for k, v in C.flatten(layer).items():
            out += ["--set", f"{k}={json.dumps(list(v)) if isinstance(v, (list, tuple)) else v}"]
    return out


def _layers(model: str, batch: int) -> list[dict]:
    base = tiny_layers(model, steps=STEPS, batch_size=batch, sample_every=0, checkpoint_every=STEPS, log_every=1,
                       sync_batchnorm=True)
    return base + [SGD, EXACT.get(model, {})]


def torchrun(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "ganforge", *args], env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_tensors(newest_checkpoint(run), "G")


def initial(model: str) -> dict[str, torch.Tensor]:
    """G's parameters before any step (a run's initial weights depend on its seed alone). Buffers are left out:
    the statistics G tracks as it runs (StyleGAN's average w) are rank 0's shard's, as DDP keeps them."""
    from ganforge.train.loop import build

    G = build(C.resolve(model, _layers(model, PER_RANK)), 1).G
    return {k: v.detach().clone() for k, v in G.named_parameters()}


def gap(a: dict, b: dict, start: dict) -> float:
    """How far apart two runs' parameters are, relative to how far the runs moved from their start."""
    keys = list(start)
    apart = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    moved = torch.cat([(b[k] - start[k]).flatten() for k in keys]).norm()
    return float(apart / moved)


@pytest.mark.parametrize("model", MODELS)
def test_two_processes_train_as_one_on_the_global_batch(model, tmp_path):
    with synthetic_fashion(tmp_path / "cache") as env:
        proc = torchrun(["train", model, "--out", str(tmp_path / "ddp"), "--quiet",
                         *_sets(_layers(model, PER_RANK))], env)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        one = tmp_path / "one"  # one process, the same global batch (2 x 4)
        train(C.resolve(model, _layers(model, 2 * PER_RANK)), one, progress=False)
        half = tmp_path / "half"  # one process on rank 0's share alone: what the test must tell apart
        train(C.resolve(model, _layers(model, PER_RANK)), half, progress=False)
    log = (tmp_path / "ddp" / "metrics.jsonl").read_text()
    assert '"dist/weights_identical": 1' in log and '"dist/world_size": 2' in log  # both ranks, to the bit
    ddp, single, partial, start = weights(tmp_path / "ddp"), weights(one), weights(half), initial(model)
    print(model, gap(ddp, single, start), gap(partial, single, start))
    assert gap(ddp, single, start) < 0.25 * gap(partial, single, start), (model, gap(ddp, single, start), gap(partial, single, start))


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, IndexError, ValueError):
                continue
    return kids


@contextlib.contextmanager
def training(run: Path, env: dict):
    """A 2-process dcgan run of up to 3 minutes, yielded once it has logged its first steps; killed at the end
    if it is still running."""
    proc = torchrun(["train", "dcgan", "--out", str(run), "--minutes", "3", *_sets(tiny_layers("dcgan", steps=0))],
                    env)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_dead_rank_stops_the_job_with_a_clear_error(tmp_path):
    with synthetic_fashion(tmp_path / "cache") as env, training(tmp_path / "run", env) as proc:
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    assert proc.returncode != 0 and took < 60
    assert "exitcode" in out and "-9" in out  # torchrun names the rank that died and how


def test_sigterm_stops_every_rank_at_one_step_and_resume_takes_another_world_size(tmp_path, capsys):
    """SIGTERM to one rank only: every rank stops at the same step (they agree each step), rank 0
    checkpoints, the job ends; the run then resumes in one process, with a warning that the world changed."""
    from conftest import run_main

    run = tmp_path / "run"
    with synthetic_fashion(tmp_path / "cache") as env:
        with training(run, env) as proc:
            os.kill(sorted(_children(proc.pid))[-1], signal.SIGTERM)
            out, _ = proc.communicate(timeout=120)
        ckpt = newest_checkpoint(run)
        assert ckpt is not None and int(ckpt.stem.split("_")[1]) > 0, out[-3000:]
        assert '"dist/weights_identical": 1' in (run / "metrics.jsonl").read_text(), out[-3000:]
        step = int(ckpt.stem.split("_")[1])
        res = run_main(["train", "dcgan", "--out", str(run), "--resume", "--steps", str(step + 2), "--quiet"], capsys)
    assert res.returncode == 0, res.stderr
    assert "saved with 2 process(es) and resumes with 1" in res.stderr
    assert int(newest_checkpoint(run).stem.split("_")[1]) == step + 2


# the paths a short plain run does not reach: ADA's controller every step (sums over ranks; in stylegan2 beside
# the path-length mean, in one recipe state), the path-length and R1 penalties every step (the path-length mean
# over ranks), samples and health on rank 0 between steps, checkpoints mid-run, and a resume under torchrun
BUSY = {"dcgan": [{"recipe": {"augment": "color,translation", "ada": True, "ada_interval": 1}}],
        "stylegan2": [{"recipe": {"pl_every": 1, "r1_every": 1, "augment": "color,translation", "ada": True,
                                  "ada_interval": 1}}]}


@pytest.mark.parametrize("model", sorted(BUSY))
def test_a_busy_run_and_its_resume_stay_identical_across_ranks(model, tmp_path):
    run = tmp_path / "run"
    layers = tiny_layers(model, steps=4, sample_every=1, checkpoint_every=2, log_every=1) + BUSY[model]
    with synthetic_fashion(tmp_path / "cache") as env:
        for args in (["--out", str(run), *_sets(layers)], ["--out", str(run), "--resume", "--steps", "6"]):
            proc = torchrun(["train", model, "--quiet", *args], env)
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out[-3000:]
    log = (run / "metrics.jsonl").read_text()
    assert log.count('"dist/weights_identical": 1') == 2 and "weights differ" not in log
    assert newest_checkpoint(run).name == "step_00000006.safetensors"
    assert len(list((run / "samples").glob("step_*.png"))) >= 6  # rank 0's grids, each step
