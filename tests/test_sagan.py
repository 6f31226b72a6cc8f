"""SAGAN: self-attention, spectral normalisation, conditional batch norm, the projection discriminator and the
hinge loss, each against a hand computation; conditioning that follows the data; the paper's network sizes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from conftest import TINY, tiny_layers
from ganforge import config as C
from ganforge.losses import LOSSES
from ganforge.models.sagan import ConditionalBatchNorm, SAGANConfig, SelfAttention, build
from ganforge.train.loop import Trainer, grid_layout


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def tiny(num_classes: int = 0, resolution: int = 16, channels: int = 1, **arch):
    cfg = SAGANConfig(**{**TINY["sagan"]["arch"], "num_classes": num_classes, **arch})
    return build(cfg, resolution, channels)


# ------------------------------------------------------------------------------------------ self-attention

def by_hand(att: SelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's equations written out: s_ij = f(x_i)^T g(x_j), beta_ji = softmax_i, o_j = v(sum_i beta_ji
    h(x_i)), y = x + gamma o. Returns (y, beta [N, HW, HW'])."""
    n, c, h, w = x.shape
    with torch.no_grad():
        f, g, hx = att.key(x), att.query(x), att.value(x)
        if att.pool:
            f, hx = F.max_pool2d(f, 2), F.max_pool2d(hx, 2)
        f, g, hx = f.flatten(2), g.flatten(2), hx.flatten(2)         # [N, d, HW'], [N, d, HW], [N, dv, HW']
        s = torch.einsum("ndi,ndj->nji", f, g)                         # [N, HW (j), HW' (i)]
        beta = s.exp() / s.exp().sum(dim=2, keepdim=True)
        o = torch.einsum("nji,nci->ncj", beta, hx).reshape(n, -1, h, w)
        return x + att.gamma * att.out(o), beta


@pytest.mark.parametrize("pool", [False, True])
def test_attention_matches_the_papers_equations_and_its_weights_sum_to_one(pool):
    att = SelfAttention(32, reduction=8, pool=pool).eval()
    with torch.no_grad():
        att.gamma.fill_(0.7)
    x = torch.randn(3, 32, 8, 8)
    expected, beta = by_hand(att, x)
    with torch.no_grad():
        fused = att(x)                                   # scaled_dot_product_attention with scale 1
        att.keep_attention = True
        explicit = att(x)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, expected, atol=1e-5, rtol=1e-5)
    positions = 64 // (4 if pool else 1)
    assert att.attention.shape == (3, 64, positions)
    torch.testing.assert_close(att.attention.sum(dim=2), torch.ones(3, 64))
    torch.testing.assert_close(att.attention, beta, atol=1e-6, rtol=1e-5)
    assert att.value.parametrizations.weight.original.shape[0] == (16 if pool else 4)  # C/2 pooled, else C/8


def test_attention_with_gamma_zero_is_the_identity_and_gamma_learns():
    att = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    y = att(x)
    assert torch.equal(y, x)                                             # gamma starts at 0
    y.square().sum().backward()
    assert att.gamma.grad is not None and att.gamma.grad.abs() > 0       # and is learned
    with torch.no_grad():
        att.gamma.fill_(1.0)
    assert not torch.allclose(att(x), x)


def test_attention_sits_where_asked_and_every_position_reaches_every_other():
    G, D = tiny(resolution=16, attn_resolutions="8,16")
    assert set(G.attention) == {"8", "16"} and set(D.attention) == {"8"}   # D's blocks output 8 and 4
    G, D = tiny(resolution=16)                                             # "auto": R/2
    assert set(G.attention) == set(D.attention) == {"8"}
    G, D = tiny(resolution=16, attn_resolutions="")
    assert not G.attention and not D.attention
    with pytest.raises(ValueError, match="attn_resolutions"):
        tiny(resolution=16, attn_resolutions="12")
    # with attention, one pixel of the input map influences every output position (a 3x3 conv would not)
    att = SelfAttention(16)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    att(x)[0, :, 7, 7].sum().backward()
    assert x.grad[0, :, 0, 0].abs().sum() > 0


# ------------------------------------------------------------------------------------------ spectral norm

def normalised_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if parametrize.is_parametrized(m, "weight")]


def test_every_layer_is_spectrally_normalised_and_stays_so_after_training(fake_fashion, tmp_path):
    from ganforge.data import load_data

    G, D = tiny(num_classes=10)
    for net in (G, D):
        weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))
                    and not getattr(m, "_cbn", False)]
        assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    # conditional BN's per-class gains and biases are not weights of a linear map: no SN (the authors' code)
    assert not any(parametrize.is_parametrized(m, "weight") for m in G.modules() if getattr(m, "_cbn", False))

    # the paper's learning rates (TTUR): one power iteration per step tracks the weights as they move
    cfg = C.resolve("sagan", tiny_layers("sagan", steps=30, sample_every=0, checkpoint_every=10**6, ema=False,
                                         precision="fp32") + [{"arch": {"num_classes": 10}}])
    trainer = Trainer(cfg, tmp_path / "run", load_data("fashion-mnist", 16), progress=False)
    before = {k: v.clone() for k, v in trainer.s.D.state_dict().items()}
    (tmp_path / "run").mkdir()
    trainer.run(30)
    moved = [k for k, v in trainer.s.D.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("original") for k in moved) and any(k.endswith("_u") for k in moved)
    for net in (trainer.s.G, trainer.s.D):
        net.eval()
        with torch.no_grad():
            for m in normalised_layers(net):
                w = m.weight
                sigma = torch.linalg.matrix_norm(w.flatten(1) if w.ndim > 2 else w, ord=2)
                assert abs(float(sigma) - 1) < 0.05, f"{type(m).__name__}: largest singular value {float(sigma):.3f}"


# ------------------------------------------------------------------------------------------ conditioning

def test_projection_discriminator_is_the_unconditional_head_plus_the_class_inner_product():
    _, D = tiny(num_classes=5)
    D.eval()  # no power iteration: the same weights in every call
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        h = D.pooled(x)
        head = D.linear(h).flatten()
        for c in range(5):
            labels = torch.full((4,), c)
            torch.testing.assert_close(D(x, labels), head + (D.embed(labels) * h).sum(1))
        assert not torch.allclose(D(x, torch.zeros(4, dtype=torch.long)), D(x, torch.ones(4, dtype=torch.long)))
    _, D0 = tiny(num_classes=0)
    assert not hasattr(D0, "embed")
    with pytest.raises(ValueError, match="pass labels"):
        D(x)


def test_conditional_batch_norm_uses_the_labels_gain_and_bias():
    cbn = ConditionalBatchNorm(6, num_classes=3, eps=1e-5)
    assert torch.equal(cbn.gain.weight, torch.ones(3, 6)) and torch.equal(cbn.bias.weight, torch.zeros(3, 6))
    with torch.no_grad():
        cbn.gain.weight.normal_()
        cbn.bias.weight.normal_()
    x = torch.randn(5, 6, 4, 4)
    c = torch.tensor([0, 2, 1, 2, 0])
    normed = F.batch_norm(x, None, None, training=True, eps=1e-5)
    expected = normed * cbn.gain.weight[c][:, :, None, None] + cbn.bias.weight[c][:, :, None, None]
    torch.testing.assert_close(cbn(x, c), expected)
    with torch.no_grad():  # changing class 1's parameters changes only the sample labelled 1
        before = cbn(x, c)
        cbn.gain.weight[1] += 1
        after = cbn(x, c)
    changed = (after - before).flatten(1).abs().amax(1) > 0
    assert changed.tolist() == [False, False, True, False, False]
    assert ConditionalBatchNorm(6, 0, 1e-5).bn.affine  # unconditional: ordinary batch norm


def test_the_generator_draws_the_class_it_is_given():
    G, _ = tiny(num_classes=4)
    G.eval()
    z = torch.randn(1, 16).expand(4, 16)
    with torch.no_grad():
        for m in G.modules():  # as after training: the classes' gains and biases differ (they start equal)
            if getattr(m, "_cbn", False):
                m.weight.add_(0.3 * torch.randn_like(m.weight))
        out = G(z, torch.arange(4))
        assert all(not torch.allclose(out[i], out[j]) for i in range(4) for j in range(i))
        torch.testing.assert_close(G(z[:2], torch.tensor([3, 3]))[0], out[3])  # batch size aside, the same
    with pytest.raises(ValueError, match="pass labels"):
        G(z)


def test_hinge_loss_and_ttur_are_the_defaults():
    d, g = LOSSES["hinge"]
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 0.5])
    # D: mean(max(0, 1 - real)) + mean(max(0, 1 + fake)) = (0 + 0.5 + 2)/3 + (0 + 1 + 1.5)/3
    assert float(d(real, fake)) == pytest.approx(5 / 3)
    assert float(g(fake)) == pytest.approx(0.5)           # G: -mean(D(G(z)))
    cfg = C.resolve("sagan", [{"train": {"device": "cpu"}}])
    t = cfg.train
    assert (t.loss, t.lr_d, t.lr_g, tuple(t.betas)) == ("hinge", 4e-4, 1e-4, (0.0, 0.9))


def test_conditioning_follows_the_data_unless_told(fake_fashion, tmp_path):
    from ganforge.data import load_data
    from ganforge.data.sources import ImageData
    from ganforge.registry import GanforgeError
    from ganforge.train.loop import check_data

    labelled = load_data("fashion-mnist", 16)
    cfg = C.resolve("sagan", [{"data": {"resolution": 16}}])
    assert cfg.arch.num_classes == -2
    check_data(cfg, labelled, {"image"})
    assert cfg.arch.num_classes == 10                     # labels: class-conditional, as many classes
    unlabelled = ImageData("plain", "tests", fields={"image": labelled.images[:32]})
    cfg = C.resolve("sagan", [{"data": {"resolution": 16}}])
    check_data(cfg, unlabelled, {"image"})
    assert cfg.arch.num_classes == 0                      # none: unconditional
    cfg = C.resolve("sagan", [{"data": {"resolution": 16}, "arch": {"num_classes": -1}}])
    with pytest.raises(GanforgeError, match="needs labels"):
        check_data(cfg, unlabelled, {"image", "label"})


def test_a_conditional_grid_has_one_row_per_class():
    assert grid_layout(64, 10) == (60, 6)
    assert grid_layout(64, 4) == (64, 16)
    assert grid_layout(16, 100) == (16, 1)
    assert grid_layout(64, 0) == (64, None)


# ------------------------------------------------------------------------------------------ the paper's network

def test_the_128px_network_has_the_papers_widths():
    cfg = SAGANConfig(num_classes=1000)
    with torch.device("meta"):
        G, D = build(cfg, 128, 3)
    assert G.start == 1024
    assert [b.conv2.parametrizations.weight.original.shape[0] for b in G.blocks] == [1024, 512, 256, 128, 64]
    assert [b.conv2.parametrizations.weight.original.shape[0] for b in D.blocks] == [64, 128, 256, 512, 1024, 1024]
    assert set(G.attention) == {"64"} and set(D.attention) == {"64"}
    assert G.attention["64"].query.parametrizations.weight.original.shape[:2] == (16, 128)  # C/8 queries
    assert D.embed.parametrizations.weight.original.shape == (1000, 1024)
    assert G.z_dim == 128
