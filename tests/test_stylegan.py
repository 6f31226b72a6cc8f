"""StyleGAN (v1) and StyleGAN2: the pieces each paper specifies, against independent references."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, steps_that_return, tiny_layers
from ganforge import config as C
from ganforge.models.style import (MappingNetwork, blur2d, downsample2d, fir_filter, modulate_weights,
                                   modulated_conv2d, style_groups, upfirdn2d, upsample2d)
from ganforge.models.stylegan import Epilogue, StyleGANConfig, build_stylegan
from ganforge.models.stylegan2 import StyleGAN2Config, build_stylegan2
from ganforge.recipes.style import path_lengths, r1_penalty
from ganforge.train.loop import build


@pytest.fixture(autouse=True)
def _seeded():
    """Every test here builds and draws from torch's global generator: the same numbers every run."""
    torch.manual_seed(0)


def tiny2(resolution: int = 16, channels: int = 3):
    cfg = StyleGAN2Config(**TINY["stylegan2"]["arch"])
    return build_stylegan2(cfg, resolution, channels)


def tiny1(resolution: int = 16, channels: int = 3):
    cfg = StyleGANConfig(**TINY["stylegan"]["arch"])
    return build_stylegan(cfg, resolution, channels)


def noise_for(G, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, *s, generator=g) for s in G.noise_shapes()]


def randomise(net, seed: int = 5):
    """Nonzero biases, noise strengths and style offsets, so no term of a comparison hides behind a zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") or "noise" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


# ------------------------------------------------------------------------------------------ mapping

def test_mapping_gives_w_of_its_width_at_a_hundredth_of_the_learning_rate():
    m = MappingNetwork(16, 24, layers=8, lr_mul=0.01)
    assert len(m.fc) == 8
    z = torch.randn(5, 16)
    assert m(z).shape == (5, 24)
    # the lr multiplier: weights stored as N(0, 1) / 0.01, used as N(0, 1) * 0.01 / sqrt(fan_in)...
    layer = m.fc[0]
    assert abs(layer.weight.std().item() * 0.01 - 1) < 0.1
    used = layer.weight * layer.scale
    assert abs(used.std().item() * math.sqrt(16) - 1) < 0.15
    # ...so an Adam step of size lr (which moves stored weights by ~lr each) moves the used weights 100x less
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = (layer.weight * layer.scale).detach().clone()
    m(z).square().mean().backward()
    opt.step()
    step = ((layer.weight * layer.scale).detach() - before).abs().max().item()
    assert step == pytest.approx(1e-2 * layer.scale, rel=1e-2)
    assert step < 1e-2 / 50


def test_mapping_tracks_the_average_w_in_training_only():
    m = MappingNetwork(8, 8, layers=2, w_avg_beta=0.5)
    z = torch.randn(64, 8)
    w = m(z)
    torch.testing.assert_close(m.w_avg, w.detach().mean(0) * 0.5)
    m.eval()
    before = m.w_avg.clone()
    m(torch.randn(4, 8))
    assert torch.equal(m.w_avg, before)


# ------------------------------------------------------------------------------------------ AdaIN (v1)

def test_adain_output_has_the_styles_per_channel_mean_and_std():
    ep = Epilogue(6, 10)
    randomise(ep)
    x = torch.randn(3, 6, 8, 8) * 4 + 2
    w = torch.randn(3, 10)
    out = ep(x, w, None)
    s = ep.style(w)
    scale, shift = s[:, :6] + 1, s[:, 6:]
    torch.testing.assert_close(out.mean(dim=(2, 3)), shift, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.std(dim=(2, 3), unbiased=False), scale.abs(), atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------------------------------ modulated conv (v2)

def test_demodulated_weights_have_unit_norm_per_output_channel():
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.rand(2, 4) * 3 + 0.1
    w = modulate_weights(weight, styles, demodulate=True)
    assert w.shape == (2, 5, 4, 3, 3)
    norms = w.square().sum(dim=(2, 3, 4)).sqrt()
    torch.testing.assert_close(norms, torch.ones(2, 5), atol=1e-5, rtol=1e-5)
    raw = modulate_weights(weight, styles, demodulate=False)
    torch.testing.assert_close(raw, weight[None] * styles[:, None, :, None, None])


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_grouped_modulated_conv_equals_the_per_sample_loop(up, demodulate):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=g)
    weight = torch.randn(5, 4, 3, 3, generator=g)
    styles = torch.randn(3, 4, generator=g)
    fir = fir_filter([1, 3, 3, 1])
    ref = []
    for i in range(3):  # the definition: each sample convolved with its own modulated (demodulated) weights
        w = weight * styles[i][None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        if up:  # transposed conv with stride 2, then the FIR filter
            y = F.conv_transpose2d(x[i: i + 1], w.transpose(0, 1), stride=2)
            y = upfirdn2d(y, fir, pad=(1, 1), gain=4.0)
        else:
            y = F.conv2d(x[i: i + 1], w, padding=1)
        ref.append(y)
    ref = torch.cat(ref)
    fused = modulated_conv2d(x, weight, styles, demodulate, up, fir, fused=True)
    split = modulated_conv2d(x, weight, styles, demodulate, up, fir, fused=False)
    assert fused.shape == (3, 5, 12 if up else 6, 12 if up else 6)
    torch.testing.assert_close(fused, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(split, ref, atol=1e-4, rtol=1e-4)


def test_fir_resampling_keeps_constants_and_sizes():
    f = fir_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 3.0)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape[-1] == 16 and down.shape[-1] == 4
    # away from the zero-padded border, a constant stays that constant
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))
    b = blur2d(x, fir_filter([1, 2, 1]))
    assert b.shape == x.shape
    torch.testing.assert_close(b[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1])
    # [1, 3, 3, 1] upsampling is bilinear interpolation (half-pixel centres) away from the border
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]
    bil = F.interpolate(ramp, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample2d(ramp, f)[..., 2:-2, 2:-2], bil[..., 2:-2, 2:-2])


def test_strided_fir_under_cpu_bf16_autocast_filters_in_fp32_and_hands_back_bf16(monkeypatch):
    """The 2x FIR downsampling avoids the CPU's slow bf16 strided depthwise conv (benchmarks/fir_speed.py) by
    filtering in fp32: the conv sees fp32, the caller gets the dtype autocast would give, the values are the
    fp32 filter's rounded to bf16, and the gradient reaches the input."""
    seen = []
    conv2d = F.conv2d

    def spy(x, w, *args, stride=1, **kw):
        seen.append((x.dtype, stride))
        return conv2d(x, w, *args, stride=stride, **kw)

    monkeypatch.setattr(F, "conv2d", spy)
    f = fir_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 8, 8)
    ref = downsample2d(x, f)
    for inp in (x, x.bfloat16()):
        leaf = inp.clone().requires_grad_(True)
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = downsample2d(leaf, f)
        assert seen == [(torch.float32, 2)], seen
        assert out.dtype == torch.bfloat16 and out.shape == ref.shape
        torch.testing.assert_close(out.float(), downsample2d(inp.float(), f).bfloat16().float())
        out.float().sum().backward()
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    seen.clear()
    assert downsample2d(x.bfloat16(), f).dtype == torch.bfloat16  # autocast off, a bf16 input: bf16 back
    assert seen == [(torch.float32, 2)]


# ------------------------------------------------------------------------------------------ the generators

@pytest.mark.parametrize("make", [tiny1, tiny2], ids=["stylegan", "stylegan2"])
def test_psi_0_gives_one_image_for_every_z_and_psi_1_changes_nothing(make):
    G, _ = make()
    randomise(G)
    G.train()
    G.mapping(torch.randn(256, G.z_dim))  # a nonzero tracked average
    G.eval()
    z = torch.randn(5, G.z_dim)
    noise = [t[:1].expand(5, -1, -1, -1) for t in noise_for(G, 1)]   # one noise draw for all
    with torch.no_grad():
        same = G(z, noise, psi=0.0)
        torch.testing.assert_close(same, same[:1].expand_as(same))
        torch.testing.assert_close(G(z, noise, psi=1.0), G(z, noise))
        assert (G(z, noise)[0] - G(z, noise)[1]).abs().max() > 1e-3, "different z give one image: vacuous"
        half = G.ws(z, psi=0.5)
        torch.testing.assert_close(half, G.mapping.w_avg.lerp(G.ws(z), 0.5))


@pytest.mark.parametrize("make", [tiny1, tiny2], ids=["stylegan", "stylegan2"])
def test_style_mixing_at_crossover_k_takes_layers_below_k_from_the_first_latent(make):
    G, _ = make()
    G.eval()
    z1, z2 = torch.randn(3, G.z_dim), torch.randn(3, G.z_dim)
    w1, w2 = G.mapping(z1), G.mapping(z2)
    for k in range(1, G.num_ws):
        ws = G.ws(z1, z2, k)
        assert ws.shape == (3, G.num_ws, G.w_dim)
        torch.testing.assert_close(ws[:, :k], w1[:, None].expand(-1, k, -1))
        torch.testing.assert_close(ws[:, k:], w2[:, None].expand(-1, G.num_ws - k, -1))
        assert torch.equal(G.ws(z1, z2, torch.tensor(k)), ws)  # training's form (a tensor k, a mask): the same
    torch.testing.assert_close(G.ws(z1, z2, G.num_ws), G.ws(z1))  # crossover at the end: no mixing
    assert torch.equal(G.ws(z1, z2, torch.tensor(G.num_ws)), G.ws(z1))
    groups = style_groups(G)
    assert list(groups) == ["coarse", "middle"]  # 16px: 4-8 coarse, 16 middle
    assert groups["coarse"].start == 0 and groups["middle"].stop == G.num_ws


@pytest.mark.parametrize("make", [tiny1, tiny2], ids=["stylegan", "stylegan2"])
def test_noise_off_is_deterministic_and_noise_changes_only_details(make):
    torch.manual_seed(0)
    G, _ = make()
    randomise(G)
    G.eval()
    z = torch.randn(16, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z), G(z))
        a, b = G(z, noise_for(G, 16, 0)), G(z, noise_for(G, 16, 1))
        assert (a - b).abs().max() > 1e-4, "the noise inputs do nothing"
        other = G(torch.randn(16, G.z_dim), noise_for(G, 16, 0))
        assert (a - b).abs().mean() < (a - other).abs().mean()


def test_v1_without_noise_inputs_has_no_noise_parameters_or_capability():
    from ganforge.recipes import capabilities

    G, _ = build_stylegan(StyleGANConfig(**{**TINY["stylegan"]["arch"], "use_noise": False}), 16, 3)
    assert G.noise_shapes() == [] and not capabilities(G)["noise"]
    assert not [n for n, _ in G.named_parameters() if "noise" in n]
    G.eval()
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z), G(z, [])), "no noise inputs: the same image with or without a noise list"
    assert capabilities(tiny1()[0])["noise"], "the paper's default keeps the noise inputs"


def test_stylegan2_builds_config_f_at_1024():
    with torch.device("meta"):
        G, D = build_stylegan2(StyleGAN2Config(), 1024, 3)
    assert G.num_ws == 18
    # NVlabs' stylegan2-ada-pytorch prints these counts for config F at 1024x1024
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sum(p.numel() for p in D.parameters()) == 29_012_513


def test_stylegan_builds_the_papers_network_at_1024():
    with torch.device("meta"):
        G, D = build_stylegan(StyleGANConfig(), 1024, 3)
    assert G.num_ws == 18
    assert round(sum(p.numel() for p in G.parameters()) / 1e6, 1) == 26.2  # the paper's table 1: 26.2M
    assert round(sum(p.numel() for p in D.parameters()) / 1e6, 1) == 23.1


def test_stylegan_right_after_growing_G_computes_the_previous_stage_upsampled():
    G, D = tiny1()
    randomise(G)
    z = torch.randn(4, G.z_dim)
    noise = noise_for(G, 4)
    with torch.no_grad():
        G.set_growth(8, 1.0)
        prev = F.interpolate(G(z, noise), scale_factor=2, mode="nearest")
        G.set_growth(16, 0.0)
        torch.testing.assert_close(G(z, noise), prev)
        G.set_growth(16, 1.0)
        assert (G(z, noise) - prev).abs().max() > 1e-2
        x = torch.rand(4, 3, 16, 16) * 2 - 1
        D.set_growth(16, 0.0)
        new = D(x)
        D.set_growth(8, 1.0)
        torch.testing.assert_close(new, D(F.avg_pool2d(x, 2)))


# ------------------------------------------------------------------------------------------ the penalties

def test_r1_matches_autograd_per_sample():
    _, D = tiny2()
    x = torch.randn(4, 3, 16, 16)
    got = r1_penalty(D, x)
    ref = []
    for i in range(4):
        xi = x[i: i + 1].clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(D(xi).sum(), xi)
        ref.append(gi.square().sum())
    # minibatch stddev couples the samples: compare at group 1, where each score is the sample's own
    D.mbstd.group_size = 1
    got = r1_penalty(D, x)
    torch.testing.assert_close(got, torch.stack(ref).mean(), rtol=1e-4, atol=1e-6)
    got.backward()  # differentiable in D's weights (double backward)
    assert D.from_rgb.weight.grad is not None and D.from_rgb.weight.grad.abs().sum() > 0


def test_path_length_matches_the_jacobian_definition():
    G, _ = tiny2(resolution=8, channels=1)
    randomise(G)
    G.train()
    torch.manual_seed(0)
    inputs = {"z": torch.randn(2, G.z_dim), "noise": noise_for(G, 2)}
    torch.manual_seed(7)
    lengths, img = path_lengths(G, inputs, 2)
    torch.manual_seed(7)  # the same y ~ N(0, I) / sqrt(HW)
    y = torch.randn(2, 1, 8, 8) / 8.0
    for i in range(2):
        ws = G.ws(inputs["z"][i: i + 1]).detach()
        noise = [t[i: i + 1] for t in inputs["noise"]]
        J = torch.autograd.functional.jacobian(lambda w: G.synthesis(w, noise), ws)  # [1,1,8,8, 1,L,W]
        Jty = (J * y[i][None, ..., None, None, None]).sum(dim=(0, 1, 2, 3))          # J^T y: [1, L, W]
        ref = Jty.square().sum(-1).mean(-1).sqrt()
        torch.testing.assert_close(lengths[i], ref[0], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ lazy regularisation

def test_lazy_regularisation_schedule_and_adam_rescaling(fake_fashion):
    cfg = C.resolve("stylegan2", tiny_layers("stylegan2", steps=1, lr_g=2e-3, lr_d=2e-3, betas=[0.0, 0.99]))
    s = build(cfg, 1)
    phases = {p.name: p for p in s.recipe.phases}
    assert [p.name for p in s.recipe.phases] == ["D", "D_reg", "G", "G_reg"]
    assert phases["D_reg"].every == 16 and phases["G_reg"].every == 4
    assert phases["D_reg"].precision == phases["G_reg"].precision == "fp32"
    cd, cg = 16 / 17, 4 / 5
    gD, gG = s.opt["D"].param_groups[0], s.opt["G"].param_groups[0]
    assert gD["lr"] == pytest.approx(2e-3 * cd) and gG["lr"] == pytest.approx(2e-3 * cg)
    assert gD["betas"][1] == pytest.approx(0.99 ** cd) and gG["betas"][1] == pytest.approx(0.99 ** cg)
    # which steps run which phases: count the losses the step returns
    from ganforge.recipes import to_device

    ran = []
    g = torch.Generator().manual_seed(0)
    for step in range(17):
        batch = {"image": torch.rand(8, 1, 16, 16) * 2 - 1}
        out = s.train_step(batch, to_device(s.recipe.inputs(8, g, batch), s.device), step)
        ran.append(("loss/D_r1" in out, "loss/G_pl" in out))
    assert [i for i, (r1, _) in enumerate(ran) if r1] == [0, 16]
    assert [i for i, (_, pl) in enumerate(ran) if pl] == [0, 4, 8, 12, 16]
    assert float(s.recipe.pl_mean) > 0  # the running mean moved (recipe state)
    # without laziness (every 1) R1 folds into D's loss and Adam is not rescaled
    cfg1 = C.resolve("stylegan2", tiny_layers("stylegan2", steps=1) + [{"recipe": {"r1_every": 1, "pl_weight": 0}}])
    s1 = build(cfg1, 1)
    assert [p.name for p in s1.recipe.phases] == ["D", "G"]
    assert s1.opt["D"].param_groups[0]["lr"] == pytest.approx(cfg1.train.lr_d)


def test_stylegan_v1_takes_lazy_r1_as_stylegan2_does(fake_fashion):
    from ganforge.recipes import to_device

    layers = tiny_layers("stylegan", steps=1, lr_g=2e-3, lr_d=2e-3, betas=[0.0, 0.99])
    s = build(C.resolve("stylegan", layers + [{"recipe": {"r1_every": 4}}]), 1)
    assert [p.name for p in s.recipe.phases] == ["D", "D_reg", "G"]
    assert s.opt["D"].param_groups[0]["lr"] == pytest.approx(2e-3 * 4 / 5)
    assert s.opt["G"].param_groups[0]["lr"] == pytest.approx(2e-3)
    g = torch.Generator().manual_seed(0)
    R = s.G(**s.recipe.inputs(1, g)).shape[-1]  # the stage the built networks run
    assert steps_that_return(s, "loss/D_r1", 9, R, g) == [0, 4, 8]
    # the paper's v1 (every 1, the default off a CPU): R1 in D's loss at every step
    s1 = build(C.resolve("stylegan", layers + [{"recipe": {"r1_every": 1}}]), 1)
    assert [p.name for p in s1.recipe.phases] == ["D", "G"]
    batch = {"image": torch.rand(8, 1, R, R, generator=g) * 2 - 1}
    assert "loss/D_r1" in s1.train_step(batch, to_device(s1.recipe.inputs(8, g, batch), s1.device), 1)
    from ganforge.registry import GanforgeError

    with pytest.raises(GanforgeError, match="r1_every"):
        C.resolve("stylegan", layers + [{"recipe": {"r1_every": 0}}])


def test_v1s_cpu_preset_makes_r1_lazy_at_lr_0005_without_mixing_and_a_gpu_keeps_the_papers(monkeypatch):
    cpu = [{"train": {"device": "cpu"}}]
    cfg = C.resolve("stylegan", cpu)
    assert (cfg.recipe.r1_every, cfg.train.lr_g, cfg.train.lr_d, cfg.recipe.mixing) == (16, 5e-3, 5e-3, 0.0)
    assert cfg.arch.use_noise, "the noise inputs stay on a CPU"
    assert {"recipe.r1_every=16 (paper: 1)", "train.lr_g=0.005 (paper: 0.001)",
            "recipe.mixing=0.0 (paper: 0.9)"} <= set(cfg.preset_notes)
    assert C.resolve("stylegan", cpu + [{"recipe": {"r1_every": 1}}]).recipe.r1_every == 1  # the user's kept
    assert C.resolve("stylegan", cpu + [{"recipe": {"mixing": 0.9}}]).recipe.mixing == 0.9
    monkeypatch.setattr(C, "_runs_on_cpu", lambda merged: False)
    cfg = C.resolve("stylegan", [])
    assert (cfg.recipe.r1_every, cfg.train.lr_g, cfg.train.lr_d, cfg.recipe.mixing) == (1, 1e-3, 1e-3, 0.9)
    assert cfg.arch.use_noise


def test_style_mixing_inputs_follow_the_probability_and_replay_from_the_seed():
    cfg = C.resolve("stylegan2", tiny_layers("stylegan2", steps=1))
    s = build(cfg, 1)
    batch = {"image": torch.zeros(4, 1, 16, 16)}
    draws = [s.recipe.inputs(4, torch.Generator().manual_seed(i), batch) for i in range(400)]
    mixed = sum(d["mix_cutoff"] < s.G.num_ws for d in draws) / len(draws)
    assert 0.85 < mixed < 0.95  # recipe.mixing = 0.9
    assert all(1 <= d["mix_cutoff"] <= s.G.num_ws for d in draws)
    a, b = (s.recipe.inputs(4, torch.Generator().manual_seed(3), batch) for _ in range(2))
    assert a["mix_cutoff"] == b["mix_cutoff"] and torch.equal(a["z2"], b["z2"])
    assert "z2" not in s.recipe.inputs(4, torch.Generator().manual_seed(3))  # sampling: no mixing


def test_the_cpu_preset_drops_mixing_and_path_length_and_a_gpu_keeps_the_papers(monkeypatch):
    cpu = [{"train": {"device": "cpu"}}]
    r = C.resolve("stylegan2", cpu).recipe
    assert (r.mixing, r.pl_weight, r.r1_gamma) == (0.0, 0.0, 10.0)
    assert "recipe.mixing=0.0 (paper: 0.9)" in C.resolve("stylegan2", cpu).preset_notes
    s = build(C.resolve("stylegan2", cpu + [{"data": {"resolution": 16}}]), 1)
    assert [p.name for p in s.recipe.phases] == ["D", "D_reg", "G"]  # lazy R1 stays; no path-length phase
    batch = {"image": torch.zeros(2, 1, 16, 16)}
    assert "z2" not in s.recipe.inputs(2, torch.Generator().manual_seed(0), batch)  # never mixes
    r = C.resolve("stylegan2", cpu + [{"recipe": {"mixing": 0.5}}]).recipe  # what the user sets is kept
    assert (r.mixing, r.pl_weight) == (0.5, 0.0)
    monkeypatch.setattr(C, "_runs_on_cpu", lambda merged: False)
    r = C.resolve("stylegan2", []).recipe
    assert (r.mixing, r.pl_weight) == (0.9, 2.0)


@pytest.mark.parametrize("key,value,match", [
    ("r1_gamma", -1.0, "r1_gamma"), ("mixing", 1.5, "mixing"), ("r1_every", 0, "r1_every"),
    ("pl_decay", 0.0, "pl_decay"), ("pl_weight", float("nan"), "pl_weight")])
def test_bad_style_recipe_values_are_clear_errors(key, value, match):
    from ganforge.registry import GanforgeError

    with pytest.raises(GanforgeError, match=match):
        C.resolve("stylegan2", tiny_layers("stylegan2") + [{"recipe": {key: value}}])


# ------------------------------------------------------------------------------------------ resume

def test_resume_restores_the_w_average_and_the_path_length_mean_exactly(fake_fashion, tmp_path):
    from ganforge.train.checkpoint import list_checkpoints, read_header, read_tensors
    from ganforge.train.loop import train

    layers = lambda steps: tiny_layers("stylegan2", steps=steps, checkpoint_every=3, sample_every=0)  # noqa: E731
    train(C.resolve("stylegan2", layers(9)), tmp_path / "full", progress=False)
    part = C.resolve("stylegan2", layers(5))
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 9
    train(part, tmp_path / "part", resume=True, progress=False)
    a, b = (list_checkpoints(tmp_path / name)[-1] for name in ("full", "part"))
    pa, pb = (read_header(c)["recipe_state"]["pl_mean"] for c in (a, b))
    assert pa == pb and pa > 0  # the running mean moved (steps 0, 4, 8) and went through the checkpoint
    for net in ("G", "G_ema"):
        wa, wb = read_tensors(a, net)["mapping.w_avg"], read_tensors(b, net)["mapping.w_avg"]
        assert torch.equal(wa, wb) and wa.abs().sum() > 0


def test_v1_style_mixing_crosses_over_within_the_stage_and_the_mixing_latent_leaves_w_avg_alone():
    cfg = C.resolve("stylegan", tiny_layers("stylegan", steps=1))
    s = build(cfg, 1)
    batch = {"image": torch.zeros(4, 1, 8, 8)}
    s.recipe.schedule(0)  # the first stage: 4x4, 2 styles in use (of 6)
    cuts = {s.recipe.inputs(4, torch.Generator().manual_seed(i), batch)["mix_cutoff"] for i in range(200)}
    assert cuts == {1, s.G.num_ws}  # mixed at the only crossover the stage has, or not at all
    s.recipe.schedule(10**9)  # the final stage: every crossover
    cuts = {s.recipe.inputs(4, torch.Generator().manual_seed(i), batch)["mix_cutoff"] for i in range(200)}
    assert cuts == set(range(1, s.G.num_ws + 1))
    G = s.G.train()
    before = G.mapping.w_avg.clone()
    z = torch.randn(4, G.z_dim)
    G.ws(z)
    after_main = G.mapping.w_avg.clone()
    G.mapping.w_avg.copy_(before)
    G.ws(z, torch.randn(4, G.z_dim) * 5, 1)
    torch.testing.assert_close(G.mapping.w_avg, after_main)  # only z moved it
