"""Every registered model: shapes, gradients, learning, save/load. Iterates over the registry, so a new model
is tested the moment it registers (and must add a tiny config to conftest.TINY)."""
from __future__ import annotations

import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.losses import LOSSES
from ganforge.registry import get_model, list_models
from ganforge.train.loop import build

from conftest import TINY, tiny_layers

MODELS = list_models()


def test_every_model_has_a_tiny_config():
    assert set(MODELS) == set(TINY), "add a tiny config for every registered model to conftest.TINY"


def test_registry_rejects_duplicates_and_unknown_names():
    from ganforge.registry import GanforgeError, register_model

    with pytest.raises(ValueError, match="twice"):
        register_model("dcgan", config_cls=object, paper="x")(lambda *a: None)
    with pytest.raises(GanforgeError, match="known models: dcgan, gan"):
        get_model("stylegan9")


@pytest.mark.parametrize("model", MODELS)
def test_builder_documents_its_paper(model):
    spec = get_model(model)
    doc = (spec.build.__module__ and __import__(spec.build.__module__, fromlist=["_"]).__doc__) or ""
    assert "arxiv.org" in doc and "Implemented" in doc, "module docstring must cite the paper and say what is implemented"
    assert spec.paper


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(model, channels):
    spec = get_model(model)
    cfg = C.resolve(model, tiny_layers(model))
    G, D = spec.build(cfg.arch, 16, channels)
    z = torch.randn(5, G.z_dim)
    x = G(z)
    assert x.shape == (5, channels, 16, 16)
    assert x.min() >= -1 and x.max() <= 1  # tanh output, the data's range
    assert D(x).shape == (5,)


@pytest.mark.parametrize("model", ["dcgan"])
@pytest.mark.parametrize("resolution,first", [(32, 256), (64, 1024)])
def test_dcgan_paper_channels(model, resolution, first):
    spec = get_model(model)
    G, D = spec.build(spec.config_cls(), resolution, 3)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert convs[0].out_channels == first  # 4x4x256 at 32px, 4x4x1024 at 64px (the paper's figure 1)
    assert [c.out_channels for c in convs][-1] == 3
    bns_d = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns_d) == len(convs) - 2  # no BN on D's input layer (nor on its 1-logit output)


@pytest.mark.parametrize("model", MODELS)
def test_gradients_reach_every_parameter(model):
    s = build(C.resolve(model, tiny_layers(model)), channels=1, device=torch.device("cpu"))
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    z = torch.randn(8, s.G.z_dim)
    ctx = s.recipe.begin_step(real, z)
    d_loss = sum(s.recipe.losses("D", ctx).values())
    d_grads = torch.autograd.grad(d_loss, list(s.D.parameters()), retain_graph=True)
    g_loss = sum(s.recipe.losses("G", ctx).values())
    g_grads = torch.autograd.grad(g_loss, list(s.G.parameters()))
    for name, g in zip([n for n, _ in s.D.named_parameters()], d_grads):
        assert g is not None and g.abs().sum() > 0, f"D.{name} gets no gradient"
    for name, g in zip([n for n, _ in s.G.named_parameters()], g_grads):
        assert g is not None and g.abs().sum() > 0, f"G.{name} gets no gradient"


@pytest.mark.parametrize("model", MODELS)
def test_a_few_steps_change_the_weights_and_freeze_nothing_permanently(model):
    s = build(C.resolve(model, tiny_layers(model)), channels=1, device=torch.device("cpu"))
    before_G = [p.detach().clone() for p in s.G.parameters()]
    before_D = [p.detach().clone() for p in s.D.parameters()]
    for step in range(3):
        out = s.train_step(torch.rand(8, 1, 16, 16) * 2 - 1, torch.randn(8, s.G.z_dim), step)
        assert all(torch.isfinite(v) for v in out.values())
    assert all(not torch.equal(a, b) for a, b in zip(before_G, s.G.parameters())), "some G weight never moved"
    assert all(not torch.equal(a, b) for a, b in zip(before_D, s.D.parameters())), "some D weight never moved"
    assert all(p.requires_grad for p in s.D.parameters())  # phase G's freeze is undone


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_losses_push_the_right_way(loss):
    d_loss, g_loss = LOSSES[loss]
    hi, lo = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert d_loss(hi, lo) < d_loss(lo, hi)   # D is rewarded for real high, fake low
    assert g_loss(hi) < g_loss(lo)           # G is rewarded when D scores fakes high


def test_minimax_is_the_papers_value_function():
    d_loss, g_loss = LOSSES["minimax"]
    fake = torch.tensor([0.3, -1.2])
    # G minimises log(1 - D(G(z))) with D = sigmoid(logit)
    assert torch.allclose(g_loss(fake), torch.log1p(-torch.sigmoid(fake)).mean(), atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_save_load_gives_identical_samples(model, fake_fashion, tmp_path):
    from ganforge.data import load_data
    from ganforge.train.loop import Trainer

    cfg = C.resolve(model, tiny_layers(model, steps=3, checkpoint_every=3))
    trainer = Trainer(cfg, tmp_path / "run", load_data("fashion-mnist", 16))
    (tmp_path / "run").mkdir()
    result = trainer.run(3)
    assert result["step"] == 3
    gen = ganforge.load(tmp_path / "run")
    z = gen.latents(6, seed=11)
    sampler = trainer.s.sampler.eval()
    with torch.no_grad():
        expected = sampler(z).float()
    a = gen.generate(z)
    assert a.shape == (6, 1, 16, 16)
    assert torch.equal(a, expected), "the loaded generator samples differently from the trained one"
    assert not torch.equal(a, gen.sample(6, seed=12))  # the seed matters
    from ganforge.sampling import export

    path = export(tmp_path / "run", tmp_path / "model.safetensors")
    assert torch.equal(ganforge.load(path).generate(z), expected)
    assert torch.equal(ganforge.generate(path, n=6, seed=11), expected)


def test_ema_generator_is_an_average_with_its_own_batchnorm_statistics(fake_fashion, tmp_path):
    from ganforge.data import load_data
    from ganforge.train.ema import recalibrate_batchnorm
    from ganforge.train.loop import Trainer

    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=6, checkpoint_every=100, sample_every=0))
    trainer = Trainer(cfg, tmp_path / "run", load_data("fashion-mnist", 16))
    (tmp_path / "run").mkdir()
    trainer.run(6)
    G, G_ema = trainer.s.G, trainer.s.G_ema
    diffs = [not torch.equal(a, b) for a, b in zip(G.parameters(), G_ema.parameters())]
    assert any(diffs), "G_ema is a copy of G, not an average"
    assert not any(p.requires_grad for p in G_ema.parameters())
    # the EMA's statistics are measured on G_ema itself, deterministically
    recalibrate_batchnorm(G_ema, G.z_dim, torch.device("cpu"))
    first = [b.clone() for b in G_ema.buffers()]
    recalibrate_batchnorm(G_ema, G.z_dim, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(first, G_ema.buffers()))
    bn_ema = next(m for m in G_ema.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn_g = next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.equal(bn_ema.running_mean, bn_g.running_mean)
    # without EMA, the run samples from G itself
    cfg.train.ema = False
    t2 = Trainer(cfg, tmp_path / "run2", load_data("fashion-mnist", 16))
    (tmp_path / "run2").mkdir()
    t2.run(2)
    assert t2.s.G_ema is None and t2.s.sampler is t2.s.G


def test_ema_half_life_and_rampup():
    from ganforge.train.ema import EMA

    src, dst = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        src.weight.fill_(1.0)
        dst.weight.fill_(0.0)
    ema = EMA(src, dst, half_life_kimg=0.064, rampup=0.0, batch_size=64)  # half-life = one batch
    ema.update(nimg=10**6)
    assert torch.allclose(dst.weight, torch.tensor([[0.5]]))
    ramp = EMA(src, dst, half_life_kimg=1000, rampup=0.05, batch_size=64)
    with torch.no_grad():
        dst.weight.fill_(0.0)
    ramp.update(nimg=64)  # the first step: half-life 3.2 images, so the average is (almost) G itself
    assert dst.weight.item() > 0.99
