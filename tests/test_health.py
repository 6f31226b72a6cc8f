"""Training health: warnings for a D that wins completely, losses that stop moving, and mode collapse."""
from __future__ import annotations

import json

import torch

from ganforge import config as C
from ganforge.train.health import HealthMonitor
from ganforge.train.loop import train

from conftest import tiny_layers


def test_d_winning_for_a_long_stretch_warns_once_and_clears():
    h = HealthMonitor(log_every=50)
    out = []
    for step in range(50, 2001, 50):
        out += h.observe_log(step, {"D/acc": 1.0, "loss/D": 0.01 * step, "loss/G": 5.0 + step / 1000})
    assert len(out) == 1 and "D wins completely" in out[0] and "lr_d" in out[0] and "recipe.augment" in out[0]
    assert h.observe_log(2050, {"D/acc": 0.7}) == []
    again = []
    for step in range(2100, 3001, 50):
        again += h.observe_log(step, {"D/acc": 0.999})
    assert len(again) == 1  # raised again after it had cleared
    # a recipe without augmentation keys (pix2pix's) is not told to set them
    h = HealthMonitor(log_every=50, can_augment=False)
    out = [m for step in range(50, 2001, 50) for m in h.observe_log(step, {"D/acc": 1.0})]
    assert len(out) == 1 and "lr_d" in out[0] and "recipe.augment" not in out[0]


def test_healthy_d_and_moving_losses_raise_nothing():
    h = HealthMonitor(log_every=50)
    g = torch.Generator().manual_seed(0)
    out = []
    for step in range(50, 3001, 50):
        out += h.observe_log(step, {"D/acc": 0.75, "loss/D": 0.6 + 0.1 * float(torch.rand(1, generator=g)),
                                    "loss/G": 2.0 + 0.3 * float(torch.rand(1, generator=g))})
    assert out == []


def test_losses_that_stop_moving_warn():
    h = HealthMonitor(log_every=10)
    out = []
    for step in range(10, 201, 10):
        out += h.observe_log(step, {"loss/D": 1.3862944, "loss/G": 0.6931472})
    assert len(out) == 1 and "stopped moving" in out[0]


def test_collapsed_samples_warn_and_varied_ones_do_not():
    h = HealthMonitor(log_every=10)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 1, 16, 16, generator=g) * 2 - 1
    varied = torch.rand(64, 1, 16, 16, generator=g) * 2 - 1
    values, msgs = h.observe_samples(varied, real)
    assert msgs == [] and 0.8 < values["health/diversity_ratio"] < 1.2
    same = real[:1].expand(64, -1, -1, -1) + 0.01 * torch.randn(64, 1, 16, 16, generator=g)
    values, msgs = h.observe_samples(same, real)
    assert len(msgs) == 1 and "mode collapse" in msgs[0] and values["health/diversity_ratio"] < 0.1


def test_class_coverage_warns_on_few_classes():
    h = HealthMonitor(log_every=10)
    assert h.observe_classes({"classes_covered": 10, "largest_class_share": 0.12, "entropy": 2.29,
                              "max_entropy": 2.303}) == []
    msgs = h.observe_classes({"classes_covered": 2, "largest_class_share": 0.8, "entropy": 0.5, "max_entropy": 2.303})
    assert len(msgs) == 1 and "2 of 10 classes" in msgs[0]


def test_training_logs_health_eval_and_keeps_the_best_checkpoint(fake_fashion, tmp_path):
    from conftest import write_idx

    write_idx(fake_fashion, n=64, split="test", seed=1)  # a test split to evaluate against
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=6, eval_every=3, eval_n=40, checkpoint_every=100,
                                         eval_metrics="fid,kid"))
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/fid" in r]
    assert [r["step"] for r in evals] == [3, 6]
    # 6 steps of a tiny G against the data: far apart (FID about 55, KID about 1.9), not a set against itself
    assert all(r["eval/fid"] > 5 and r["eval/kid"] > 0.1 and "health/classes_covered" in r for r in evals)
    assert any("health/diversity_ratio" in r for r in rows)
    assert any("D/acc" in r for r in rows)
    best = run / "checkpoints" / "best.safetensors"
    assert best.exists()
    from ganforge.train.checkpoint import read_header

    header = read_header(best)
    assert header["best_fid"] == min(r["eval/fid"] for r in evals)
    assert header["step"] == min(evals, key=lambda r: r["eval/fid"])["step"]


def test_eval_every_without_an_extractor_fails_before_training(tmp_path, monkeypatch):
    from PIL import Image

    import pytest

    from ganforge.registry import GanforgeError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (20, 20), (i * 20, 100, 200)).save(folder / f"{i}.png")
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=4, eval_every=2, batch_size=4) + [{"data": {"name": str(folder)}}])
    with pytest.raises(GanforgeError, match="inception"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing half-made was left behind


def test_evaluating_during_training_does_not_change_the_run(fake_fashion, tmp_path):
    # gan's D uses dropout (the global RNG): any RNG the evaluation touched would show in the weights
    from conftest import write_idx
    from safetensors.torch import load_file

    from ganforge.train.checkpoint import list_checkpoints

    write_idx(fake_fashion, n=64, split="test", seed=1)
    final = {}
    for every in (0, 3):
        cfg = C.resolve("gan", tiny_layers("gan", steps=6, eval_every=every, eval_n=40, checkpoint_every=100))
        train(cfg, tmp_path / f"run{every}", progress=False)
        final[every] = load_file(str(list_checkpoints(tmp_path / f"run{every}")[-1]))
    # the comparison means something only if the second run did evaluate, and there are weights to compare
    rows = [json.loads(line) for line in (tmp_path / "run3" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/fid" in r] == [3, 6]
    compared = [k for k in final[0] if k.startswith(("G.", "D.", "opt."))]
    assert any(k.startswith("G.") for k in compared) and any(k.startswith("D.") for k in compared)
    for k in compared:
        assert torch.equal(final[0][k], final[3][k]), k
