"""Inference paths: latents, truncation, interpolation, DCGAN's latent arithmetic, loading errors."""
from __future__ import annotations

import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.registry import GanforgeError
from ganforge.sampling import interpolation_latents, latent_arithmetic, lerp, slerp
from ganforge.train.loop import train

from conftest import tiny_layers, translates


@pytest.fixture(scope="module", params=[m for m in ganforge.list_models() if not translates(m)])
def gen(request, tmp_path_factory):
    from conftest import synthetic_fashion

    with synthetic_fashion(tmp_path_factory.mktemp("cache")):
        run = tmp_path_factory.mktemp("run") / "r"
        train(C.resolve(request.param, tiny_layers(request.param, steps=2)), run, progress=False)
    return ganforge.load(run)


def test_slerp_keeps_endpoints_and_norm():
    a, b = torch.randn(1, 64), torch.randn(1, 64)
    t = torch.linspace(0, 1, 7)
    path = slerp(a.expand(7, -1), b.expand(7, -1), t)
    assert torch.allclose(path[0], a[0], atol=1e-5) and torch.allclose(path[-1], b[0], atol=1e-5)
    # for equal-norm endpoints the path stays on their sphere; a straight line cuts inside it
    b = b / b.norm() * a.norm()
    path = slerp(a.expand(7, -1), b.expand(7, -1), t)
    assert torch.allclose(path.norm(dim=1), a.norm().expand(7), rtol=1e-4)
    assert lerp(a.expand(7, -1), b.expand(7, -1), t)[3].norm() < a.norm() * 0.99


def test_interpolation_walks_through_every_seed(gen):
    z = interpolation_latents(gen, [3, 5, 9], steps=4)
    assert z.shape == (7, gen.z_dim)  # 2 segments of 4, sharing the middle point
    for i, seed in zip((0, 3, 6), (3, 5, 9)):
        assert torch.allclose(z[i], gen.latents(1, seed=seed)[0], atol=1e-5)
    with pytest.raises(GanforgeError):
        interpolation_latents(gen, [1], steps=4)


def test_truncation_redraws_rather_than_clips(gen):
    if gen.has_mapping:
        pytest.skip("a mapping network's truncation is psi on w: test_truncation_of_a_mapping_model_is_psi")
    z = gen.latents(500, seed=0, truncation=0.5)
    assert z.abs().max() <= 0.5
    # BigGAN's trick redraws the values beyond the threshold; clipping them would pile ~62% onto +-0.5
    assert (z.abs() == 0.5).float().mean() < 0.01
    # and what stays is the normal law truncated: about uniform on [-0.5, 0.5] here (std 0.29 at most)
    assert 0.25 < z.std() < 0.29
    with pytest.raises(GanforgeError, match="threshold"):
        gen.latents(4, truncation=0)


def test_truncation_of_a_mapping_model_is_psi(gen):
    if not gen.has_mapping:
        pytest.skip("BigGAN's truncation of z: test_truncation_redraws_rather_than_clips")
    # psi acts on w (w_avg + psi (w - w_avg), in G); z is drawn as ever, and any finite psi is allowed
    # (the images: tests/test_style_tools.py)
    for psi in (0.0, 0.5, 1.0, -0.7, 2.0):
        inputs = gen.inputs(500, seed=0, truncation=psi)
        assert inputs["psi"] == psi and torch.equal(inputs["z"], gen.latents(500, seed=0))
    assert "psi" not in gen.inputs(2, seed=0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(GanforgeError, match="finite"):
            gen.latents(4, truncation=bad)


def test_latent_arithmetic_decodes_the_combined_mean(gen):
    groups = [gen.latents(3, seed=s) for s in (1, 2, 3)]
    out = latent_arithmetic(gen, groups, [1, -1, 1])
    expected = gen.generate((groups[0].mean(0) - groups[1].mean(0) + groups[2].mean(0))[None])
    assert out.shape == (1, gen.channels, 16, 16)
    assert torch.equal(out, expected)
    assert not torch.equal(out, gen.generate(groups[0].mean(0)[None]))


def test_generate_checks_latent_shape(gen):
    with pytest.raises(GanforgeError, match="latents must have shape"):
        gen.generate(torch.randn(2, gen.z_dim + 1))
    with pytest.raises(GanforgeError):
        gen.sample(0)


def test_load_rejects_what_is_not_a_model(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(GanforgeError, match="not a readable safetensors"):
        ganforge.load(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(GanforgeError, match="not a ganforge"):
        ganforge.load(other)
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(GanforgeError, match="no complete checkpoint"):
        ganforge.load(tmp_path / "empty-run")


def test_a_seed_gives_the_same_images_and_class_is_an_error_for_unconditional_models(gen):
    assert torch.equal(gen.sample(3, seed=4), gen.sample(3, seed=4))
    assert not torch.equal(gen.sample(3, seed=4), gen.sample(3, seed=5))
    assert not gen.conditional and gen.capabilities["conditional"] is False
    with pytest.raises(GanforgeError, match="unconditional"):
        gen.sample(2, labels=1)
