"""Config layering, typed overrides, and what --resume may and may not change."""
from __future__ import annotations

import re

import pytest

from ganforge import config as C
from ganforge.registry import GanforgeError
from ganforge.train.run import prepare_run


def test_layers_apply_in_order_and_paper_defaults_fill_the_rest():
    cfg = C.resolve("dcgan", [{"train": {"lr_g": 1e-3}}, C.parse_set(["train.lr_g=5e-4", "arch.base_channels=8"])])
    assert cfg.train.lr_g == 5e-4 and cfg.arch.base_channels == 8
    assert cfg.train.betas == (0.5, 0.999)     # DCGAN's Adam beta1 = 0.5
    assert cfg.data.resolution == 32           # DCGAN's default resolution here
    assert C.resolve("gan", []).data.resolution == 28


@pytest.mark.parametrize("item,match", [
    ("train.nope=1", "unknown config key 'train.nope'"),
    ("arch.depth=3", "unknown config key 'arch.depth'"),
    ("train.lr_g=abc", "train.lr_g must be a number"),
    ("train.steps=1.5", "train.steps must be an integer"),
    ("train.ema=maybe", "train.ema must be true or false"),
    ("train.betas=[0.5]", "train.betas must be a list of 2"),
    ("train.loss=wgan-gp-xl", "unknown loss"),
    ("train.batch_size=0", "train.batch_size must be >= 1"),
    ("data.channels=2", "data.channels must be 0 (as the data is), 1 or 3"),
    ("nokey", "--set takes key=value"),
])
def test_bad_overrides_name_the_problem(item, match):
    with pytest.raises(GanforgeError, match=re.escape(match)):
        C.resolve("dcgan", [C.parse_set([item])])


def test_config_round_trips_through_yaml(tmp_path):
    cfg = C.resolve("gan", [C.parse_set(["train.loss=minimax", "arch.d_pieces=3"])])
    path = tmp_path / "c.yaml"
    path.write_text(C.to_yaml(cfg))
    back = C.from_dict(C.read_yaml(path))
    assert back == cfg


def test_preset_applies_for_its_model_and_data(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "PRESETS", tmp_path)
    (tmp_path / "dcgan_myfolder.yaml").write_text("train:\n  lr_d: 0.0004\n")
    assert C.resolve("dcgan", [{"data": {"name": "myfolder"}}]).train.lr_d == 4e-4
    assert C.resolve("dcgan", [{"data": {"name": "other"}}]).train.lr_d == 2e-4
    # an explicit value beats the preset
    assert C.resolve("dcgan", [{"data": {"name": "myfolder"}, "train": {"lr_d": 1e-4}}]).train.lr_d == 1e-4


def test_resume_may_extend_but_not_change_the_model(tmp_path):
    run = tmp_path / "run"
    cfg = prepare_run("dcgan", [{"train": {"steps": 10}}], run, resume=False)
    run.mkdir()
    (run / "config.yaml").write_text(C.to_yaml(cfg))
    with pytest.raises(GanforgeError, match="already holds a run"):
        prepare_run("dcgan", [], run, resume=False)
    longer = prepare_run("dcgan", [{"train": {"steps": 50}}], run, resume=True)
    assert longer.train.steps == 50 and longer.arch == cfg.arch
    with pytest.raises(GanforgeError, match="cannot change arch.base_channels"):
        prepare_run("dcgan", [C.parse_set(["arch.base_channels=8"])], run, resume=True)
    with pytest.raises(GanforgeError, match="is a 'dcgan' run"):
        prepare_run("gan", [], run, resume=True)
    with pytest.raises(GanforgeError, match="holds no run"):
        prepare_run("dcgan", [], tmp_path / "nothing", resume=True)


def test_gan_with_sgd_gets_the_papers_sgd_settings_unless_set():
    sgd = C.resolve("gan", [{"train": {"optimizer": "sgd"}}]).train
    assert (sgd.lr_g, sgd.lr_d, sgd.betas[0]) == (0.1, 0.1, 0.5)     # mnist.yaml: lr .1, momentum .5
    assert (sgd.lr_decay, sgd.lr_min, sgd.momentum_final) == (1.000004, 1e-6, 0.7)
    assert C.resolve("gan", [{"train": {"optimizer": "sgd", "lr_d": 0.05}}]).train.lr_d == 0.05
    adam = C.resolve("gan", []).train
    assert adam.optimizer == "adam" and adam.lr_g == 2e-4 and adam.lr_decay == 1.0


def test_sgd_schedules_follow_the_step_and_images_shown():
    import torch

    from ganforge.train.loop import adjust_sgd

    cfg = C.resolve("gan", [{"train": {"optimizer": "sgd"}}])
    opt = {k: torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.0) for k in ("G", "D")}
    adjust_sgd(opt, cfg, step=50_000, nimg=6_250_000)  # half of the 250 epochs of 50k images
    group = opt["G"].param_groups[0]
    assert group["lr"] == pytest.approx(0.1 / 1.000004 ** 50_000)
    assert group["momentum"] == pytest.approx(0.6)
    adjust_sgd(opt, cfg, step=10**8, nimg=10**9)
    assert opt["D"].param_groups[0]["lr"] == 1e-6 and opt["D"].param_groups[0]["momentum"] == pytest.approx(0.7)
