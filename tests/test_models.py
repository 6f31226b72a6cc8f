"""Every registered model: shapes, gradients, learning, save/load. Iterates over the registry, so a new model
is tested the moment it registers (and must add a tiny config to conftest.TINY)."""
from __future__ import annotations

import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.losses import LOSSES
from ganforge.registry import get_model, list_models
from ganforge.train.loop import build, train

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
    cfg = C.resolve(model, tiny_layers(model, steps=3, checkpoint_every=3))
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["step"] == 3
    gen = ganforge.load(tmp_path / "run")
    a = gen.sample(6, seed=11)
    b = ganforge.load(result["checkpoint"]).sample(6, seed=11)
    assert a.shape == (6, 1, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, gen.sample(6, seed=12))  # the seed matters
    # the exported single file holds the same generator
    from ganforge.sampling import export

    path = export(tmp_path / "run", tmp_path / "model.safetensors")
    assert torch.equal(ganforge.load(path).sample(6, seed=11), a)
    assert torch.equal(ganforge.generate(path, n=6, seed=11), a)
