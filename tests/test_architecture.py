"""Each paper's layer list, pinned: a changed activation, norm, kernel size, stride or width fails here.

The expected lists are data, written as the papers give them; `layer_list` flattens a built network into the
same form (Flatten, a reshape, is left out). Also: the DCGAN kernel-size option (5 = the paper's figure 1
and the authors' code, 4 = the PyTorch example's) at every power-of-two resolution, the class-conditional
option of both families, and that unconditional models keep the parameters, names and outputs of the v1
checkpoints in tests/data.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from ganforge.models import dcgan, gan, progan
from ganforge.models.gan import Maxout
from ganforge.models.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev

DATA = Path(__file__).parent / "data"


def _square(t):
    return t[0] if len(set(t)) == 1 else tuple(t)


def _describe(m: nn.Module) -> tuple:
    if isinstance(m, nn.ConvTranspose2d):  # (in, out, kernel, stride, padding, output_padding, bias)
        return ("ConvTranspose2d", m.in_channels, m.out_channels, _square(m.kernel_size), _square(m.stride),
                _square(m.padding), _square(m.output_padding), m.bias is not None)
    if isinstance(m, nn.Conv2d):  # (in, out, kernel, stride, padding, bias)
        return ("Conv2d", m.in_channels, m.out_channels, _square(m.kernel_size), _square(m.stride),
                _square(m.padding), m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return ("BatchNorm2d", m.num_features)
    if isinstance(m, nn.LeakyReLU):
        return ("LeakyReLU", m.negative_slope)
    if isinstance(m, Maxout):  # (in, units, pieces)
        return ("Maxout", m.linear.in_features, m.units, m.pieces)
    if isinstance(m, nn.Linear):
        return ("Linear", m.in_features, m.out_features)
    if isinstance(m, nn.Dropout):
        return ("Dropout", m.p)
    if isinstance(m, nn.Embedding):
        return ("Embedding", m.num_embeddings, m.embedding_dim)
    if isinstance(m, EqualizedConv2d):  # (in, out, kernel, He gain: the run-time scale times sqrt(fan in))
        return ("EqualizedConv2d", m.in_channels, m.out_channels, m.kernel_size,
                round(m.scale * (m.in_channels * m.kernel_size ** 2) ** 0.5, 4))
    if isinstance(m, EqualizedLinear):  # (in, out, gain, lr_mul)
        return ("EqualizedLinear", m.in_features, m.out_features, round(m.scale / m.lr_mul * m.in_features ** 0.5, 4),
                m.lr_mul)
    if isinstance(m, MinibatchStdDev):
        return ("MinibatchStdDev", m.group_size)
    return (type(m).__name__,)  # ReLU, Tanh; anything unexpected shows up by name and fails the comparison


def layer_list(net: nn.Module) -> list[tuple]:
    """The network's leaf layers in registration order; Maxout counts as one layer."""
    if isinstance(net, Maxout) or not list(net.children()):
        return [] if isinstance(net, nn.Flatten) else [_describe(net)]
    return [layer for child in net.children() for layer in layer_list(child)]


# ---------------------------------------------------------------------------------------------- DCGAN
# kernel size -> (padding, output_padding) of the stride-2 layers: both double (G) / halve (D) exactly.
# 5: the paper's figure 1 and the authors' code (Newmu/dcgan_code: 5x5, stride 2, padding 2, outputs 2x
#    the input);
# 4: the PyTorch DCGAN example's (4x4, stride 2, padding 1).
STRIDE2 = {4: (1, 0), 5: (2, 1)}


def dcgan_G_paper(resolution: int, k: int) -> list[tuple]:
    """Radford et al. 2016, figure 1 (64px) and its 32px analogue, RGB."""
    p, op = STRIDE2[k]
    return {
        64: [
            ("ConvTranspose2d", 100, 1024, 4, 1, 0, 0, False), ("BatchNorm2d", 1024), ("ReLU",),  # project: 4x4x1024
            ("ConvTranspose2d", 1024, 512, k, 2, p, op, False), ("BatchNorm2d", 512), ("ReLU",),  # 8x8x512
            ("ConvTranspose2d", 512, 256, k, 2, p, op, False), ("BatchNorm2d", 256), ("ReLU",),   # 16x16x256
            ("ConvTranspose2d", 256, 128, k, 2, p, op, False), ("BatchNorm2d", 128), ("ReLU",),   # 32x32x128
            ("ConvTranspose2d", 128, 3, k, 2, p, op, True), ("Tanh",),                            # 64x64x3, no BN
        ],
        32: [
            ("ConvTranspose2d", 100, 256, 4, 1, 0, 0, False), ("BatchNorm2d", 256), ("ReLU",),    # project: 4x4x256
            ("ConvTranspose2d", 256, 128, k, 2, p, op, False), ("BatchNorm2d", 128), ("ReLU",),   # 8x8x128
            ("ConvTranspose2d", 128, 64, k, 2, p, op, False), ("BatchNorm2d", 64), ("ReLU",),     # 16x16x64
            ("ConvTranspose2d", 64, 3, k, 2, p, op, True), ("Tanh",),                             # 32x32x3, no BN
        ],
    }[resolution]


def dcgan_D_paper(resolution: int, k: int) -> list[tuple]:
    """G mirrored: strided convolutions, LeakyReLU(0.2), BN on every layer but the input; one logit."""
    p, _ = STRIDE2[k]
    return {
        64: [
            ("Conv2d", 3, 128, k, 2, p, True), ("LeakyReLU", 0.2),                              # 32x32x128, no BN
            ("Conv2d", 128, 256, k, 2, p, False), ("BatchNorm2d", 256), ("LeakyReLU", 0.2),     # 16x16x256
            ("Conv2d", 256, 512, k, 2, p, False), ("BatchNorm2d", 512), ("LeakyReLU", 0.2),     # 8x8x512
            ("Conv2d", 512, 1024, k, 2, p, False), ("BatchNorm2d", 1024), ("LeakyReLU", 0.2),   # 4x4x1024
            ("Conv2d", 1024, 1, 4, 1, 0, True),                                                 # 4x4 map -> logit
        ],
        32: [
            ("Conv2d", 3, 64, k, 2, p, True), ("LeakyReLU", 0.2),                               # 16x16x64, no BN
            ("Conv2d", 64, 128, k, 2, p, False), ("BatchNorm2d", 128), ("LeakyReLU", 0.2),      # 8x8x128
            ("Conv2d", 128, 256, k, 2, p, False), ("BatchNorm2d", 256), ("LeakyReLU", 0.2),     # 4x4x256
            ("Conv2d", 256, 1, 4, 1, 0, True),                                                  # 4x4 map -> logit
        ],
    }[resolution]


@lru_cache(maxsize=None)
def paper_dcgan(resolution: int, k: int):
    torch.manual_seed(0)
    return dcgan.build(dcgan.DCGANConfig(kernel_size=k), resolution, 3)


@pytest.mark.parametrize("k", [4, 5])
@pytest.mark.parametrize("resolution", [32, 64])
def test_dcgan_layer_lists_are_the_papers(resolution, k):
    G, D = paper_dcgan(resolution, k)
    assert layer_list(G) == dcgan_G_paper(resolution, k)
    assert layer_list(D) == dcgan_D_paper(resolution, k)
    # the paper's rules, said once more in words
    assert layer_list(G)[-2:] == [("ConvTranspose2d", {64: 128, 32: 64}[resolution], 3, k, 2, *STRIDE2[k], True),
                                  ("Tanh",)], "no BN on G's output, tanh last"
    assert layer_list(D)[1] == ("LeakyReLU", 0.2), "no BN on D's input"
    z = torch.randn(2, 100)
    with torch.no_grad():
        x = G.eval()(z)
        assert x.shape == (2, 3, resolution, resolution)
        assert D.eval()(x).shape == (2,)


@pytest.mark.parametrize("k", [4, 5])
def test_dcgan_weights_start_from_normal_002(k):
    G, D = paper_dcgan(64, k)
    w_g = G.net[0].weight   # 100 x 1024 x 4 x 4: 1.6M weights
    w_d = D.net[8].weight   # 1024 x 512 x k x k
    for w in (w_g, w_d):
        assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    bn = G.net[1].weight    # BN scales from N(1, 0.02)
    assert abs(bn.mean().item() - 1) < 0.004 and abs(bn.std().item() - 0.02) < 0.004
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(torch.all(m.bias == 0) for m in convs if m.bias is not None)


@pytest.mark.parametrize("k", [4, 5])
@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128])
def test_dcgan_every_stride2_layer_doubles_or_halves_exactly(resolution, k):
    G, D = dcgan.build(dcgan.DCGANConfig(base_channels=2, max_channels=8, z_dim=4, kernel_size=k), resolution, 1)
    sizes = {"G": [], "D": []}
    for name, net in (("G", G), ("D", D)):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.register_forward_hook(lambda mod, inp, out, name=name: sizes[name].append(out.shape[-1]))
    with torch.no_grad():
        x = G.eval()(torch.randn(2, 4))
        logits = D.eval()(x)
    n = resolution.bit_length() - 3  # stride-2 layers: 4 -> resolution
    assert sizes["G"] == [4 * 2 ** i for i in range(n + 1)]           # 4, 8, ..., resolution
    assert sizes["D"] == [resolution >> i for i in range(1, n + 1)] + [1]  # resolution/2, ..., 4, then the logit
    assert x.shape == (2, 1, resolution, resolution) and logits.shape == (2,)


@pytest.mark.parametrize("bad", [3, 6, 0])
def test_dcgan_kernel_size_is_4_or_5(bad):
    with pytest.raises(ValueError, match="arch.kernel_size"):
        dcgan.build(dcgan.DCGANConfig(base_channels=2, kernel_size=bad), 16, 1)


# ------------------------------------------------------------------------------------------ 2014 GAN
GAN_G_PAPER = [  # Goodfellow et al. 2014, MNIST (mnist.yaml): z (100) -> 1200 ReLU -> 1200 ReLU -> 784 pixels
    ("Linear", 100, 1200), ("ReLU",),
    ("Linear", 1200, 1200), ("ReLU",),
    ("Linear", 1200, 784), ("Tanh",),  # the paper's sigmoid, on [-1, 1] data
]
GAN_D_PAPER = [  # two maxout layers (240 units x 5 pieces), dropout 0.2 on the input and 0.5 on hidden layers
    ("Dropout", 0.2), ("Maxout", 784, 240, 5),
    ("Dropout", 0.5), ("Maxout", 240, 240, 5),
    ("Dropout", 0.5), ("Linear", 240, 1),  # one logit (the paper's sigmoid unit, before the sigmoid)
]


def test_gan_layer_lists_are_the_papers():
    G, D = gan.build(gan.GANConfig(), 28, 1)
    assert layer_list(G) == GAN_G_PAPER
    assert layer_list(D) == GAN_D_PAPER
    with torch.no_grad():
        x = G.eval()(torch.randn(3, 100))
        assert x.shape == (3, 1, 28, 28)
        assert D.eval()(x).shape == (3,)


# ---------------------------------------------------------------------------------- Progressive GAN
# Karras et al. 2017, table 2 (1024x1024, RGB), with the growing machinery's toRGB/fromRGB for every stage.
# Equalised learning rate everywhere: He's gain sqrt(2) (1.4142), linear outputs gain 1; G's first (dense)
# layer gain sqrt(2)/4 (0.3536) as the official code. No normalisation in D; pixel norm after every G conv.
PG_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
HE = round(2 ** 0.5, 4)
LRELU = ("LeakyReLU", 0.2)


def progan_G_paper() -> list[tuple]:
    w = PG_WIDTHS
    layers = [("PixelNorm",),                                                      # normalised latent (512)
              ("EqualizedLinear", 512, 512 * 16, round(2 ** 0.5 / 4, 4), 1.0), LRELU, ("PixelNorm",),  # 4x4x512
              ("EqualizedConv2d", 512, 512, 3, HE), LRELU, ("PixelNorm",)]          # conv 3x3, 4x4x512
    for r in list(w)[1:]:  # upsample (nearest, no layer), then two 3x3 convs
        layers += [("EqualizedConv2d", w[r // 2], w[r], 3, HE), LRELU, ("PixelNorm",),
                   ("EqualizedConv2d", w[r], w[r], 3, HE), LRELU, ("PixelNorm",)]
    return layers + [("EqualizedConv2d", w[r], 3, 1, 1.0) for r in w]             # toRGB: 1x1, linear


def progan_D_paper() -> list[tuple]:
    w = PG_WIDTHS
    layers = [layer for r in w for layer in (("EqualizedConv2d", 3, w[r], 1, HE), LRELU)]  # fromRGB: 1x1
    for r in list(w)[1:]:  # two 3x3 convs, then downsample (2x2 average, no layer)
        layers += [("EqualizedConv2d", w[r], w[r], 3, HE), LRELU, ("EqualizedConv2d", w[r], w[r // 2], 3, HE), LRELU]
    return layers + [("MinibatchStdDev", 4),                                       # 513x4x4
                     ("EqualizedConv2d", 513, 512, 3, HE), LRELU,                  # conv 3x3, 4x4x512
                     ("EqualizedLinear", 512 * 16, 512, HE, 1.0), LRELU,           # the paper's "conv 4x4" to 1x1
                     ("EqualizedLinear", 512, 1, 1.0, 1.0)]                        # fully-connected, linear


def test_progan_layer_lists_are_the_papers():
    with torch.device("meta"):
        G, D = progan.build_progan(progan.ProGANConfig(), 1024, 3)
    assert layer_list(G) == progan_G_paper()
    assert layer_list(D) == progan_D_paper()


# -------------------------------------------------------------------------------- class-conditional
def test_conditional_layer_lists():
    G, D = dcgan.build(dcgan.DCGANConfig(num_classes=10), 32, 3)
    assert layer_list(G)[0] == ("ConvTranspose2d", 110, 256, 4, 1, 0, 0, False)  # [z, one-hot c] -> 4x4x256
    assert layer_list(G)[1:] == dcgan_G_paper(32, 4)[1:]
    assert layer_list(D) == dcgan_D_paper(32, 4) + [("Embedding", 10, 256)]  # projection's class vectors
    assert abs(D.embed.weight.std().item() - 0.02) < 0.004
    G, D = gan.build(gan.GANConfig(num_classes=10), 28, 1)  # Mirza and Osindero 2014, labels at the inputs
    assert layer_list(G) == [("Linear", 110, 1200)] + GAN_G_PAPER[1:]
    assert layer_list(D) == [("Dropout", 0.2), ("Maxout", 794, 240, 5)] + GAN_D_PAPER[2:]


TINY = {  # the tiny configs of the v1 checkpoints in tests/data (16px, grey)
    "dcgan": (dcgan, dict(base_channels=4, z_dim=16)),
    "gan": (gan, dict(g_hidden=32, d_units=16, d_pieces=2)),
}


def tiny(model: str, **kw):
    module, cfg = TINY[model]
    cfg_cls = module.DCGANConfig if module is dcgan else module.GANConfig
    torch.manual_seed(0)
    G, D = module.build(cfg_cls(**cfg, **kw), 16, 1)
    return G.eval(), D.eval()  # eval: no dropout, BN on running statistics, so outputs are deterministic


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("model", ["dcgan", "gan"])
def test_conditional_models_use_their_labels(model):
    G0, D0 = tiny(model)
    G, D = tiny(model, num_classes=10)
    assert G.num_classes == D.num_classes == 10 and G0.num_classes == D0.num_classes == 0
    assert G.z_dim == G0.z_dim
    assert n_params(G) != n_params(G0) and n_params(D) != n_params(D0)
    z = torch.randn(4, G.z_dim)
    c0, c1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        x0, x1 = G(z, c0), G(z, c1)
        assert x0.shape == (4, 1, 16, 16)
        assert (x0 - x1).abs().max() > 1e-4, "same z, different labels: G must give different images"
        d0, d1 = D(x0, c0), D(x0, c1)
        assert d0.shape == (4,)
        assert (d0 - d1).abs().max() > 1e-6, "same image, different labels: D must score differently"
        with pytest.raises(ValueError, match="class-conditional"):
            G(z)
        with pytest.raises(ValueError, match="class-conditional"):
            D(x0)
        with pytest.raises(ValueError, match="shape"):
            G(z, torch.zeros(3, dtype=torch.long))
        with pytest.raises((RuntimeError, IndexError)):
            G(z, torch.full((4,), 10))  # labels run 0 .. num_classes - 1
        # an unconditional model ignores labels, so one loop can pass them to either
        assert torch.equal(G0(z, c1), G0(z)) and torch.equal(D0(x0, c1), D0(x0))


@pytest.mark.parametrize("model", ["dcgan", "gan"])
def test_labels_get_gradients(model):
    G, D = tiny(model, num_classes=3)
    G.train(), D.train()
    c = torch.tensor([0, 1, 2, 1])
    D(G(torch.randn(4, G.z_dim), c), c).sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize("module", [dcgan, gan])
@pytest.mark.parametrize("bad", [-1, -2])
def test_num_classes_must_be_resolved_before_building(module, bad):
    # -1 means "as many as the data has" in the config; the builder must never see it
    cfg = dcgan.DCGANConfig(base_channels=2, num_classes=bad) if module is dcgan else gan.GANConfig(num_classes=bad)
    with pytest.raises(ValueError, match="arch.num_classes"):
        module.build(cfg, 16, 1)


# ------------------------------------------------------------------------------ old checkpoints load
@pytest.mark.parametrize("model", ["dcgan", "gan"])
def test_unconditional_models_keep_the_v1_checkpoint_layout_and_outputs(model):
    weights = load_file(DATA / f"v1-{model}-16px.safetensors")
    G, D = tiny(model)
    for net, prefix in ((G, "G."), (D, "D."), (G, "G_ema.")):
        saved = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        assert set(net.state_dict()) == set(saved)
        net.load_state_dict(saved, strict=True)
    # G is G_ema now: its samples at seed 3 are the ones v1 wrote (v1-samples-seed3.safetensors)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x = G(z)
        logits = D(x)
    torch.testing.assert_close(x, load_file(DATA / "v1-samples-seed3.safetensors")[model], rtol=0, atol=1e-5)
    assert torch.isfinite(logits).all()
