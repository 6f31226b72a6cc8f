"""Progressive GAN (Karras et al. 2017): the growing networks' fade-in arithmetic, the equalised-LR layers,
minibatch stddev, pixel norm, the WGAN-GP penalty, the growth schedule and its optimiser resets, resume and
sampling mid-fade, the paper's full-size network, and the CPU preset.

Tiny networks throughout (widths 16, 16, 8 at 4, 8, 16px); the 1024px network is built on the meta device.
"""
from __future__ import annotations

import re
import shutil

import pytest
import torch
import torch.nn.functional as F

import ganforge
from ganforge import config as C
from ganforge.data import load_data
from ganforge.models.layers import (EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, downscale2d,
                                    upscale2d)
from ganforge.models.progan import ProGANConfig, build_progan
from ganforge.recipes import Schedule, full_size
from ganforge.recipes.growth import Growth, GrowthConfig, fade_reals
from ganforge.recipes.progressive import gradient_penalty
from ganforge.registry import GanforgeError
from ganforge.train.checkpoint import list_checkpoints, read_header, read_tensors
from ganforge.train.loop import Trainer, build, train

from conftest import TINY, run_cli, steps_that_return, tiny_layers

def tiny_nets(resolution: int = 16, channels: int = 1, seed: int = 0, **arch):
    torch.manual_seed(seed)
    cfg = ProGANConfig(**{**TINY["progan"]["arch"], **arch})
    G, D = build_progan(cfg, resolution, channels)
    return G, D


def randomise_biases(*nets) -> None:
    """Biases start at zero; give them values so that a layer left out or run twice shows up."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for net in nets:
            for name, p in net.named_parameters():
                if name.endswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)


# ------------------------------------------------------------------------------------------ growing

def test_right_after_growing_G_computes_exactly_the_previous_stage_upsampled():
    G, _ = tiny_nets()
    randomise_biases(G)
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(1))
    out = {}
    with torch.no_grad():  # train mode: the raw (unclipped) output, so nothing hides behind the clip
        for r, a in ((4, 1.0), (8, 0.0), (8, 0.3), (8, 1.0), (16, 0.0), (16, 0.3), (16, 1.0)):
            G.set_growth(r, a)
            out[r, a] = G(z)
    assert out[4, 1.0].shape == (6, 1, 4, 4) and out[8, 0.3].shape == (6, 1, 8, 8)
    assert out[16, 0.0].shape == (6, 1, 16, 16)
    for r in (8, 16):
        prev = upscale2d(out[r // 2, 1.0])
        torch.testing.assert_close(out[r, 0.0], prev)  # alpha 0: the previous stage's output, upsampled
        # in between: the lerp of the two, as the paper's figure 2 (b)
        torch.testing.assert_close(out[r, 0.3], torch.lerp(prev, out[r, 1.0], 0.3))
        assert (out[r, 1.0] - prev).abs().max() > 1e-2, "the new block changes nothing: the test is vacuous"


def test_at_alpha_1_only_the_new_block_makes_the_output():
    G, D = tiny_nets()
    randomise_biases(G, D)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(2))
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        G.set_growth(16, 1.0)
        D.set_growth(16, 1.0)
        g0, d0 = G(z), D(x)
        for old in (G.to_rgb["8"], G.to_rgb["4"], D.from_rgb["8"][0], D.from_rgb["4"][0]):
            old.weight.add_(1.0)
        assert torch.equal(G(z), g0) and torch.equal(D(x), d0), "an older toRGB/fromRGB still feeds the output"
        G.to_rgb["16"].weight.add_(0.1)
        D.from_rgb["16"][0].weight.add_(0.1)
        assert not torch.equal(G(z), g0) and not torch.equal(D(x), d0)
        # mid-fade, the old toRGB/fromRGB do count
        G.set_growth(16, 0.5)
        D.set_growth(16, 0.5)
        g1, d1 = G(z), D(x)
        G.to_rgb["8"].weight.add_(0.1)
        D.from_rgb["8"][0].weight.add_(0.1)
        assert not torch.equal(G(z), g1) and not torch.equal(D(x), d1)


def test_right_after_growing_D_scores_the_downscaled_image_as_the_previous_stage():
    _, D = tiny_nets()
    randomise_biases(D)
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        D.set_growth(16, 0.0)
        new = D(x)
        D.set_growth(8, 1.0)
        old = D(downscale2d(x))
        torch.testing.assert_close(new, old)
        D.set_growth(8, 0.0)
        new8 = D(downscale2d(x))
        D.set_growth(4, 1.0)
        torch.testing.assert_close(new8, D(downscale2d(downscale2d(x))))
        D.set_growth(16, 1.0)
        assert (D(x) - old).abs().max() > 1e-3, "the new block changes nothing: the test is vacuous"


def test_set_growth_checks_its_stage_and_keeps_it_in_the_state_dict():
    G, _ = tiny_nets()
    assert G.resolutions == [4, 8, 16] and G.growth == (16, 1.0)
    with pytest.raises(ValueError, match="not one of"):
        G.set_growth(32)
    with pytest.raises(ValueError, match="alpha"):
        G.set_growth(8, 1.5)
    G.set_growth(4, 0.2)
    assert G.growth == (4, 1.0) and not G.fading  # nothing to fade from at 4x4
    G.set_growth(8, 0.25)
    assert G.fading and G.growth_state.tolist() == [8.0, 0.25]
    fresh, _ = tiny_nets(seed=1)
    fresh.load_state_dict(G.state_dict())
    assert fresh.growth == (8, 0.25)


# ------------------------------------------------------------------------------------------ layers

def test_equalized_conv_stores_unit_variance_weights_and_scales_them_at_run_time():
    torch.manual_seed(0)
    conv = EqualizedConv2d(256, 128, 3)  # 295k weights
    w = conv.weight.detach()
    assert abs(w.std().item() - 1) < 0.01 and abs(w.mean().item()) < 0.01
    assert conv.scale == pytest.approx(2 ** 0.5 / (256 * 9) ** 0.5)
    assert torch.all(conv.bias == 0)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 256, 5, 5)
    with torch.no_grad():
        y = conv(x)
        torch.testing.assert_close(y, F.conv2d(x, w * conv.scale, conv.bias, padding=1))
        assert y.shape == (2, 128, 5, 5)
        conv.scale *= 2  # the scale is applied at run time, not folded into the stored weights
        torch.testing.assert_close(conv(x) - conv.bias.view(1, -1, 1, 1), 2 * (y - conv.bias.view(1, -1, 1, 1)))
    assert EqualizedConv2d(8, 3, 1, gain=1.0).scale == pytest.approx(1 / 8 ** 0.5)  # toRGB: linear gain


def test_equalized_linear_with_lr_mul():
    torch.manual_seed(0)
    fast, slow = EqualizedLinear(512, 512), EqualizedLinear(512, 512, lr_mul=0.01, bias_init=1.0)
    assert abs(fast.weight.std().item() - 1) < 0.01
    assert abs(slow.weight.std().item() - 100) < 1  # stored as N(0, 1) / lr_mul ...
    assert fast.scale == pytest.approx(2 ** 0.5 / 512 ** 0.5)
    assert slow.scale == pytest.approx(2 ** 0.5 / 512 ** 0.5 * 0.01)  # ... and scaled by lr_mul at run time
    x = torch.randn(3, 512)
    with torch.no_grad():
        for layer in (fast, slow):
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight * layer.scale, layer.bias * layer.lr_mul))
        # the same effective weights' law and the bias init, whatever lr_mul
        assert abs((slow.weight * slow.scale).std().item() - (2 / 512) ** 0.5) < 1e-3
        torch.testing.assert_close(slow.bias * slow.lr_mul, torch.ones(512))
        y = fast(x)
        fast.scale /= 2
        torch.testing.assert_close(fast(x), y / 2)  # zero bias: the output halves
        fast.scale *= 2
    # lr_mul slows learning: one Adam step moves each stored weight by ~lr, so each effective weight by
    # lr * scale; the effective weights of both layers start alike, their steps differ by lr_mul
    steps = []
    for layer in (fast, slow):
        before = (layer.weight * layer.scale).detach().clone()
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        layer(x).square().mean().backward()
        opt.step()
        steps.append(((layer.weight * layer.scale).detach() - before).abs().mean().item())
    assert steps[0] == pytest.approx(1e-3 * fast.scale, rel=0.05)
    assert steps[1] / steps[0] == pytest.approx(0.01, rel=0.05)


def _group_std(x: torch.Tensor, members: list[int]) -> float:
    """The minibatch-stddev statistic of one group, by hand: per feature and pixel the (biased) standard
    deviation over the group's samples, averaged."""
    return x[members].std(dim=0, unbiased=False).mean().item()


@pytest.mark.parametrize("n,groups", [
    (8, [[0, 2, 4, 6], [1, 3, 5, 7]]),   # group size 4 divides 8: sample i in group i mod 2
    (6, [[0, 2, 4], [1, 3, 5]]),         # 4 does not divide 6: groups of 3 (its largest divisor below 4)
    (2, [[0, 1]]),                        # fewer samples than a group: one group of all
])
def test_minibatch_stddev_adds_one_channel_of_group_std(n, groups):
    x = torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(n)) * torch.arange(1, n + 1).view(n, 1, 1, 1)
    y = MinibatchStdDev(4)(x)
    assert y.shape == (n, 4, 4, 4)
    assert torch.equal(y[:, :3], x)
    for members in groups:
        expected = _group_std(x, members)
        for i in members:
            torch.testing.assert_close(y[i, 3], torch.full((4, 4), expected), rtol=1e-5, atol=1e-6)
    if len(groups) > 1:
        assert y[groups[0][0], 3, 0, 0] != y[groups[1][0], 3, 0, 0]


def test_pixel_norm_gives_unit_mean_square_over_channels():
    x = torch.randn(4, 32, 5, 5) * 3 + 1
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(4, 5, 5), rtol=1e-5, atol=1e-5)
    ratio = y / x  # each pixel's feature vector is only rescaled, by a positive factor
    assert (ratio > 0).all()
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4, atol=1e-6)
    assert torch.equal(PixelNorm()(torch.zeros(1, 8, 2, 2)), torch.zeros(1, 8, 2, 2))  # epsilon: no NaN


# ------------------------------------------------------------------------------------------ the penalty

def critic_and_batches(alpha: float):
    """A tiny 8px critic (random biases) at fade-in `alpha`, and a real and a fake batch of 4 for it."""
    _, D = tiny_nets(8)
    randomise_biases(D)
    D.set_growth(8, alpha)
    g = torch.Generator().manual_seed(5)
    return D, torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.rand(4, 1, 8, 8, generator=g) * 2 - 1


@pytest.mark.parametrize("target", [1.0, 3.0])
def test_gradient_penalty_matches_a_hand_computed_reference_and_reaches_D(target):
    D, real, fake = critic_and_batches(0.5)  # mid-fade: every layer of D runs
    torch.manual_seed(7)
    gp = gradient_penalty(D, real, fake, target)
    torch.manual_seed(7)  # the same u
    u = torch.rand(4, 1, 1, 1)
    mixed = (real + u * (fake - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
    norms = grad.reshape(4, -1).norm(dim=1)
    reference = ((norms - target) ** 2).mean()
    torch.testing.assert_close(gp, reference)
    assert gp.item() > 0
    # double backward: the penalty is a function of D's weights, and the same function as the reference
    params = list(D.parameters())
    got = torch.autograd.grad(gp, params, allow_unused=True)
    want = torch.autograd.grad(reference, params, allow_unused=True)
    weights = [(n, a, b) for (n, _), a, b in zip(D.named_parameters(), got, want) if n.endswith("weight")]
    assert all(a is not None and a.abs().sum() > 0 for _, a, _ in weights), "a weight of D gets no GP gradient"
    for name, a, b in weights:
        torch.testing.assert_close(a, b, msg=name)


def test_an_augmented_penalty_is_ds_own_gradient_norm_at_the_augmented_mix():
    # With recipe.augment the critic scores augmented images, so the 1-Lipschitz pull is on D's gradient there:
    # ||grad_y D(y)|| at y = T(lerp(real, fake, u)), not the gradient through T (which cutout's zeros shrink)
    from ganforge.augment import augment

    D, real, fake = critic_and_batches(1.0)
    T = lambda x: augment(x, ("translation", "cutout"))  # noqa: E731
    torch.manual_seed(7)
    gp = gradient_penalty(D, real, fake, 1.0, T)
    torch.manual_seed(7)  # the same u, then the same ops
    u = torch.rand(4, 1, 1, 1)
    y = T(real + u * (fake - real)).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(y).sum(), y, create_graph=True)
    torch.testing.assert_close(gp, ((grad.reshape(4, -1).norm(dim=1) - 1) ** 2).mean())
    torch.manual_seed(7)
    through = gradient_penalty(lambda x: D(T(x)), real, fake, 1.0)  # the other reading: a smaller norm
    assert not torch.allclose(gp, through)


def test_lazy_gradient_penalty_runs_every_n_steps_weighted_n_times_with_adams_rescaling(fake_fashion):
    layers = tiny_layers("progan", steps=1, lr_g=2e-3, lr_d=2e-3, betas=[0.0, 0.99])
    s = build(C.resolve("progan", layers + [{"recipe": {"gp_every": 4}}]), 1)
    assert [p.name for p in s.recipe.phases] == ["D", "D_reg", "G"]
    reg = s.recipe.phases[1]
    assert (reg.every, reg.precision, reg.trains) == (4, "fp32", "D")
    c = 4 / 5  # StyleGAN2's section 3.1: lr * c, betas ** c
    gD, gG = s.opt["D"].param_groups[0], s.opt["G"].param_groups[0]
    assert gD["lr"] == pytest.approx(2e-3 * c) and gD["betas"][1] == pytest.approx(0.99 ** c)
    assert gG["lr"] == pytest.approx(2e-3) and gG["betas"][1] == pytest.approx(0.99)  # G is not regularised
    # the lazy phase's loss is gp_every times the penalty the paper's every-step form adds to D's loss
    g = torch.Generator().manual_seed(0)
    R = s.G(**s.recipe.inputs(1, g)).shape[-1]  # the stage the built networks run
    real = torch.rand(8, 1, R, R, generator=g) * 2 - 1
    ctx = s.recipe.begin_step({"image": real}, s.recipe.inputs(8, g), None)
    assert "loss/D_gp" not in s.recipe.losses("D", ctx)  # lazy: not part of D's own loss
    torch.manual_seed(3)
    lazy = s.recipe.losses("D_reg", ctx)["loss/D_gp"]
    torch.manual_seed(3)
    plain = gradient_penalty(s.D, real, ctx["fake"].detach()) * s.cfg.recipe.gp_weight
    torch.testing.assert_close(lazy, 4 * plain)
    assert lazy.item() > 0
    assert steps_that_return(s, "loss/D_gp", 9, R, g) == [0, 4, 8]
    # the paper's form (every 1): the penalty is part of D's loss at every step, Adam as given
    s1 = build(C.resolve("progan", layers + [{"recipe": {"gp_every": 1}}]), 1)
    assert [p.name for p in s1.recipe.phases] == ["D", "G"]
    assert s1.opt["D"].param_groups[0]["lr"] == pytest.approx(2e-3)
    ctx = s1.recipe.begin_step({"image": real}, s1.recipe.inputs(8, g), None)
    assert "loss/D_gp" in s1.recipe.losses("D", ctx)


def test_a_run_saved_before_the_lazy_penalty_resumes_with_the_penalty_every_step():
    # configs saved before recipe.gp_every (and v1's recipe.r1_every) existed trained with the penalty at every
    # step: a resume must go on that way, not pick up today's CPU preset
    for model, key in (("progan", "gp_every"), ("stylegan", "r1_every")):
        saved = C.resolve(model, [{"train": {"device": "cpu"}}]).to_dict()
        assert saved["recipe"][key] > 1
        del saved["recipe"][key]
        assert getattr(C.from_dict(saved).recipe, key) == 1


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_gp_every_is_a_clear_error(value):
    with pytest.raises(GanforgeError, match="gp_every"):
        C.resolve("progan", tiny_layers("progan") + [{"recipe": {"gp_every": value}}])


def test_gradient_penalty_runs_in_fp32_under_a_bf16_run():
    # The loop calls the recipe's losses inside the run's autocast; the penalty promises fp32 throughout
    # (recipes/progressive.py: "a gradient norm in bf16 is too coarse"), its input gradient included.
    D, real, fake = critic_and_batches(0.5)
    torch.manual_seed(7)
    fp32 = gradient_penalty(D, real, fake)
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_bf16 = gradient_penalty(D, real, fake)
    assert under_bf16.dtype == torch.float32
    assert torch.equal(under_bf16.detach(), fp32.detach()), (
        f"the penalty differs under bf16 autocast ({under_bf16.item():.6f} vs {fp32.item():.6f} in fp32): its "
        f"double backward (torch.autograd.grad) runs outside the block that disables autocast")


# ------------------------------------------------------------------------------------------ the schedule

def test_schedule_arithmetic_at_boundaries_and_mid_fade():
    growth = Growth(GrowthConfig(stable_kimg=1, fade_kimg=1, batch_sizes="8:6,16:5"), resolution=32, batch_size=10)
    expected = {  # nimg: (resolution, batch size, alpha)
        0: (4, 10, 1.0), 999: (4, 10, 1.0),
        1000: (8, 6, 0.0), 1500: (8, 6, 0.5), 1999: (8, 6, 0.999), 2000: (8, 6, 1.0), 2999: (8, 6, 1.0),
        3000: (16, 5, 0.0), 3250: (16, 5, 0.25), 4000: (16, 5, 1.0),
        5000: (32, 10, 0.0), 5500: (32, 10, 0.5), 6000: (32, 10, 1.0), 6001: (32, 10, 1.0), 10**9: (32, 10, 1.0),
    }
    for nimg, (r, n, a) in expected.items():
        s = growth(nimg)
        assert (s.resolution, s.batch_size) == (r, n) and s.alpha == pytest.approx(a), nimg
    assert growth.stages() == [(4, 0.0, 0.0), (8, 1.0, 2.0), (16, 3.0, 4.0), (32, 5.0, 6.0)]
    assert "16px from 3k (stable from 4k, batch 5)" in growth.describe()
    # alpha rises monotonically through a fade-in
    alphas = [growth(n).alpha for n in range(3000, 4001, 50)]
    assert alphas == sorted(alphas) and alphas[0] == 0 and alphas[-1] == 1


def test_schedule_without_fade_jumps_and_other_starts():
    jump = Growth(GrowthConfig(stable_kimg=1, fade_kimg=0), 16, 8)
    assert [(jump(n).resolution, jump(n).alpha) for n in (0, 999, 1000, 1999, 2000, 10**6)] == [
        (4, 1.0), (4, 1.0), (8, 1.0), (8, 1.0), (16, 1.0), (16, 1.0)]
    assert all(jump(n).alpha == 1.0 for n in range(0, 3000, 100))
    at_once = Growth(GrowthConfig(stable_kimg=0, fade_kimg=0), 16, 8)
    assert (at_once(0).resolution, at_once(0).alpha) == (16, 1.0)
    from8 = Growth(GrowthConfig(start_resolution=8, stable_kimg=1, fade_kimg=1), 32, 8)
    assert [from8(n).resolution for n in (0, 1000, 3000, 5000)] == [8, 16, 32, 32]
    only = Growth(GrowthConfig(stable_kimg=1, fade_kimg=1), 4, 8)
    assert (only(0).resolution, only(10**6).resolution) == (4, 4)


@pytest.mark.parametrize("recipe,match", [
    ({"start_resolution": 32}, "start_resolution (32) is above the run's resolution (16)"),
    ({"start_resolution": 6}, "start_resolution must be a power of two"),
    ({"start_resolution": 2}, "start_resolution must be a power of two >= 4"),
    ({"batch_sizes": "abc"}, "recipe.batch_sizes must look like"),
    ({"batch_sizes": "16-4"}, "recipe.batch_sizes must look like"),
    ({"batch_sizes": "12:4"}, "power-of-two resolution"),
    ({"batch_sizes": "16:0"}, "value > 0"),
    ({"lr_dict": "16:fast"}, "recipe.lr_dict must look like"),
    ({"lr_dict": "12:0.001"}, "power-of-two resolution"),
    ({"stable_kimg": -1}, "recipe.stable_kimg must be a finite number >= 0"),
    ({"fade_kimg": float("nan")}, "recipe.fade_kimg must be a finite number >= 0"),
])
def test_bad_growth_configs_are_clear_errors(recipe, match):
    with pytest.raises(GanforgeError, match=re.escape(match)):
        C.resolve("progan", [{"data": {"resolution": 16}, "recipe": recipe}])


def test_per_resolution_batch_sizes_reach_the_loop():
    cfg = C.resolve("progan", tiny_layers("progan") + [{"recipe": {"batch_sizes": "4:12,16:6"}}])
    s = build(cfg, 1, torch.device("cpu"))
    assert [s.recipe.schedule(n).batch_size for n in (0, 1500, 3500, 10**6)] == [12, 8, 6, 6]


def test_per_resolution_learning_rates_reach_the_optimisers():
    for every, c in ((1, 1.0), (4, 0.8)):  # a lazy penalty rescales D's rate, whichever rate the schedule gives
        cfg = C.resolve("progan", tiny_layers("progan", lr_g=1e-3, lr_d=2e-3)
                        + [{"recipe": {"lr_dict": "16:0.0015", "gp_every": every}}])
        s = build(cfg, 1, torch.device("cpu"))
        lrs = []
        for sched in (Schedule(8, 8, 1.0), s.recipe.schedule(10**6)):
            s.apply_schedule(sched)
            lrs.append((s.opt["G"].param_groups[0]["lr"], s.opt["D"].param_groups[0]["lr"]))
        assert s.recipe.schedule(10**6).lr == 0.0015
        assert [x for pair in lrs for x in pair] == pytest.approx([1e-3, 2e-3 * c, 0.0015, 0.0015 * c])


def test_served_lower_resolutions_are_the_2x2_pooled_reals_a_fade_in_starts_from(tmp_path):
    """At alpha = 0 D's previous-stage path sees downscale2d(reals at R): the data served at R/2 while R/2 was
    stable must be the same images (up to uint8 rounding), or D gets a free cue at every fade-in."""
    from ganforge.data.sources import ImageData, to_unit_range

    g = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    data = ImageData("noise", "tests", fields={"image": images})
    for r in (16, 8, 4):
        idx = torch.arange(16)
        at_r = to_unit_range(data.take(idx, r)["image"])
        pooled = fade_reals(to_unit_range(data.take(idx, 2 * r)["image"]), 0.0)[..., ::2, ::2]
        from_full = F.avg_pool2d(to_unit_range(images), 32 // r)
        assert (at_r - pooled).abs().max() <= 2 / 255 + 1e-6
        assert (at_r - from_full).abs().max() <= 1 / 255 + 1e-6


def test_a_new_run_starts_and_shows_step_0_at_its_first_stage(fake_fashion, tmp_path):
    cfg = C.resolve("progan", tiny_layers("progan"))
    trainer = Trainer(cfg, tmp_path / "run", load_data("fashion-mnist", 16), progress=False)
    assert trainer.s.G.growth == trainer.s.D.growth == trainer.s.G_ema.growth == (4, 1.0)
    grid = trainer._generate(trainer.grid)
    assert grid.shape[-1] == 16 and torch.equal(grid[..., ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3),
                                                grid)


@pytest.mark.parametrize("resolution", [0, 3, 5, 24, 48, 100])
def test_every_odd_resolution_is_a_clear_error(resolution):
    with pytest.raises(GanforgeError) as e:
        C.resolve("progan", [{"data": {"resolution": resolution}}])
    assert (">= 4" if resolution < 4 else "power of two") in str(e.value) and str(resolution) in str(e.value)


def test_odd_resolution_on_the_command_line_is_one_line(tmp_path):
    proc = run_cli("train", "progan", "--resolution", "48", "--dry-run", "--out", str(tmp_path / "run"),
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganforge train: error:"), proc.stderr
    assert "48" in lines[0] and "power of two" in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_fade_reals():
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    coarse = upscale2d(downscale2d(x))
    assert torch.equal(fade_reals(x, 0.0), coarse)
    assert torch.equal(fade_reals(x, 1.0), x)
    torch.testing.assert_close(fade_reals(x, 0.25), 0.75 * coarse + 0.25 * x)
    assert not torch.equal(coarse, x)


def test_the_loop_fades_the_reals_with_the_schedule():
    s = build(C.resolve("progan", tiny_layers("progan")), 1, torch.device("cpu"))
    seen = []
    begin = s.recipe.begin_step
    s.recipe.begin_step = lambda batch, inputs, schedule=None: seen.append(batch["image"]) or begin(batch, inputs,
                                                                                                     schedule)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inputs = s.recipe.inputs(8, torch.Generator().manual_seed(1))
    s.train_step({"image": x}, inputs, 0, Schedule(8, 8, 0.25))
    s.train_step({"image": x}, inputs, 1, Schedule(8, 8, 1.0))
    assert torch.equal(seen[0], fade_reals(x, 0.25)) and torch.equal(seen[1], x)
    assert s.G.growth == s.D.growth == s.G_ema.growth == (8, 1.0)


# ------------------------------------------------------------------------------------------ optimiser resets

def _resets(reset_optimizer: bool) -> list[int]:
    """Walk a run's schedule (stable = fade = 200 images, 4 -> 16px, 8 images a step) through
    Setup.apply_schedule; returns the nimg at which it cleared the optimisers' state."""
    cfg = C.resolve("progan", tiny_layers("progan") + [
        {"recipe": {"stable_kimg": 0.2, "fade_kimg": 0.2, "reset_optimizer": reset_optimizer}}])
    s = build(cfg, 1, torch.device("cpu"))
    # real Adam state first: one step at the first stage
    sched = s.recipe.schedule(0)
    x = torch.rand(8, 1, 4, 4) * 2 - 1
    s.train_step({"image": x}, s.recipe.inputs(8, torch.Generator().manual_seed(0)), 0, sched)
    assert all(len(opt.state) > 0 for opt in s.opt.values())
    s.apply_schedule(s.recipe.schedule(8))  # the same stage: kept
    assert all(len(opt.state) > 0 for opt in s.opt.values())
    cleared = []
    for nimg in range(8, 1600, 8):
        for opt in s.opt.values():  # a marker in every optimiser's state, to see whether it survives
            opt.state[opt.param_groups[0]["params"][0]]["marker"] = torch.ones(())
        sched = s.recipe.schedule(nimg)
        s.apply_schedule(sched)
        gone = [len(opt.state) == 0 for opt in s.opt.values()]
        assert all(gone) or not any(gone), "G's and D's optimisers are reset together"
        if all(gone):
            cleared.append(nimg)
        for net in (s.G, s.D, s.G_ema):
            assert net.growth == (sched.resolution, 1.0 if sched.resolution == 4 else sched.alpha)
    return cleared


def test_optimizer_state_is_cleared_when_a_resolution_starts_fading_in_and_when_it_stabilises():
    # 8px fades in from image 200 and is stable from 400; 16px fades in from 600 and is stable from 800
    assert _resets(True) == [200, 400, 600, 800]
    assert _resets(False) == []


# ------------------------------------------------------------------------------------------ resume, sampling

MID_FADE = {"recipe": {"stable_kimg": 0.024, "fade_kimg": 0.024}}  # 3 steps of 8 images per phase


def test_resume_mid_fade_is_bit_identical_and_restores_the_stage(fake_fashion, tmp_path):
    from test_resume import assert_identical

    # steps 0-2: 4px; 3-5: 8px fading in; 6-8: 8px; 9-11: 16px fading in; 12-13: 16px. A checkpoint every 5
    # steps: after step 5 (8px, alpha 1/3 in its last step: mid-fade) and after step 10 (16px fading in)
    cfg = C.resolve("progan", tiny_layers("progan", steps=14, checkpoint_every=5, keep_checkpoints=10,
                                          sample_every=0) + [MID_FADE])
    train(cfg, tmp_path / "full", progress=False)
    ckpts = list_checkpoints(tmp_path / "full")
    assert [p.name for p in ckpts] == [f"step_{s:08d}.safetensors" for s in (5, 10, 14)]
    mid = ckpts[0]
    header, tensors = read_header(mid), read_tensors(mid)
    assert header["nimg"] == 40
    for net in ("G", "D", "G_ema"):  # saved mid-fade: the stage of the step before the checkpoint
        assert tensors[f"{net}.growth_state"].tolist() == pytest.approx([8.0, 1 / 3])
    assert any(k.startswith("opt.G.") for k in tensors) and any(k.startswith("opt.D.") for k in tensors)

    # resume from the mid-fade checkpoint alone
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    for p in list_checkpoints(tmp_path / "part")[1:]:
        p.unlink()
    trainer = Trainer(cfg, tmp_path / "probe", load_data("fashion-mnist", 16), progress=False)
    trainer.restore(list_checkpoints(tmp_path / "part")[-1])
    for net in (trainer.s.G, trainer.s.D, trainer.s.G_ema):
        assert net.stage_resolution == 8 and net.alpha == pytest.approx(1 / 3) and net.fading
    train(cfg, tmp_path / "part", resume=True, progress=False)
    part = list_checkpoints(tmp_path / "part")
    assert [p.name for p in part] == [p.name for p in ckpts]
    assert_identical(ckpts[1], part[1])  # weights, G_ema, optimiser states, RNG states: all of them
    assert_identical(ckpts[2], part[2])
    assert read_tensors(ckpts[2])["G.growth_state"].tolist() == [16.0, 1.0]


def test_a_generator_loaded_mid_growth_samples_at_its_stage_at_full_size(fake_fashion, tmp_path):
    from ganforge.sampling import export

    cfg = C.resolve("progan", tiny_layers("progan", steps=5, checkpoint_every=5, sample_every=0) + [MID_FADE])
    trainer = Trainer(cfg, tmp_path / "run", load_data("fashion-mnist", 16), progress=False)
    (tmp_path / "run").mkdir()
    trainer.run(5)
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    saved = read_tensors(ckpt, "G_ema")["growth_state"]
    gen = ganforge.load(tmp_path / "run")
    assert gen.net.growth == (int(saved[0]), saved[1].item()) and gen.net.growth[0] == 8
    assert gen.net.growth[1] == pytest.approx(1 / 3) and gen.net.fading
    assert gen.resolution == 16
    inputs = gen.inputs(6, seed=11)
    x = gen.generate(inputs)
    assert x.shape == (6, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    # an 8px image upscaled by nearest neighbours: constant 2x2 blocks
    assert torch.equal(x, upscale2d(x[..., ::2, ::2]))
    with torch.no_grad():
        expected = full_size(trainer.s.sampler.eval()(**inputs), 16)
    assert torch.equal(x, expected), "the loaded generator samples differently from the trained one"
    assert torch.equal(gen.sample(3, seed=2), gen.sample(3, seed=2))
    exported = ganforge.load(export(tmp_path / "run", tmp_path / "m.safetensors"))
    assert exported.net.growth == gen.net.growth and torch.equal(exported.generate(inputs), x)


# ------------------------------------------------------------------------------------------ the paper's network

PAPER_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}  # table 2


def test_the_papers_network_builds_at_1024_with_its_widths_and_23m_parameters():
    with torch.device("meta"):
        G, D = build_progan(ProGANConfig(), 1024, 3)
    assert G.resolutions == list(PAPER_WIDTHS)
    assert G.dense.out_features == 512 * 16 and G.head[1].out_channels == 512 and G.z_dim == 512
    for r, width in PAPER_WIDTHS.items():
        if r > 4:
            block = G.blocks[str(r)]
            assert (block[0].in_channels, block[0].out_channels, block[2].out_channels) == (
                PAPER_WIDTHS[r // 2], width, width), r
            dblock = D.blocks[str(r)]
            assert (dblock[0].in_channels, dblock[0].out_channels, dblock[2].out_channels) == (
                width, width, PAPER_WIDTHS[r // 2]), r
        assert (G.to_rgb[str(r)].in_channels, G.to_rgb[str(r)].out_channels) == (width, 3)
        assert (D.from_rgb[str(r)][0].in_channels, D.from_rgb[str(r)][0].out_channels) == (3, width)
    assert D.final[0].in_channels == 513  # minibatch stddev's extra feature map
    n_g, n_d = (sum(p.numel() for p in net.parameters()) for net in (G, D))
    # the paper's table 2: 23.1M each (measured here: G 23,079,115, D 23,087,249, every toRGB/fromRGB included;
    # G's first dense layer has one bias per channel after the reshape, as the official code)
    assert n_g == 23_079_115 and n_d == 23_087_249
    assert abs(n_g / 23.1e6 - 1) < 0.02 and abs(n_d / 23.1e6 - 1) < 0.02


# ------------------------------------------------------------------------------------------ the CPU preset

NOTES = ["arch.fmap_base=512 (paper: 8192)", "arch.fmap_max=128 (paper: 512)",
         "recipe.stable_kimg=6.0 (paper: 800.0)", "recipe.fade_kimg=6.0 (paper: 800.0)",
         "recipe.gp_every=4 (paper: 1)", "train.lr_g=0.003 (paper: 0.001)", "train.lr_d=0.003 (paper: 0.001)"]


def test_the_cpu_preset_scales_down_where_the_user_set_nothing(monkeypatch):
    cpu = {"train": {"device": "cpu"}}
    cfg = C.resolve("progan", [cpu])
    assert (cfg.arch.fmap_base, cfg.arch.fmap_max) == (512, 128)
    assert (cfg.recipe.stable_kimg, cfg.recipe.fade_kimg) == (6.0, 6.0)
    assert cfg.preset_notes == NOTES
    assert cfg.data.resolution == 64 and cfg.train.loss == "wasserstein"
    # keys the user set are kept, and only the others are announced
    assert (cfg.recipe.gp_every, cfg.train.lr_g, cfg.train.lr_d) == (4, 3e-3, 3e-3)
    cfg = C.resolve("progan", [cpu, {"arch": {"fmap_base": 256}, "recipe": {"fade_kimg": 2}, "train": {"lr_d": 1e-3}}])
    assert (cfg.arch.fmap_base, cfg.arch.fmap_max, cfg.recipe.stable_kimg, cfg.recipe.fade_kimg) == (256, 128, 6.0, 2.0)
    assert (cfg.train.lr_g, cfg.train.lr_d) == (3e-3, 1e-3)
    assert cfg.preset_notes == [NOTES[1], NOTES[2], NOTES[4], NOTES[5]]
    cfg = C.resolve("progan", [cpu, C.parse_set(["arch.fmap_base=8192", "arch.fmap_max=512",
                                                 "recipe.stable_kimg=800", "recipe.fade_kimg=800",
                                                 "recipe.gp_every=1", "train.lr_g=0.001", "train.lr_d=0.001"])])
    assert cfg.preset_notes == [] and cfg.arch == ProGANConfig()
    # off a CPU: the paper's values
    monkeypatch.setattr(C, "_runs_on_cpu", lambda merged: False)
    cfg = C.resolve("progan", [])
    assert cfg.arch == ProGANConfig() and (cfg.recipe.stable_kimg, cfg.recipe.fade_kimg) == (800.0, 800.0)
    assert (cfg.recipe.gp_every, cfg.train.lr_g) == (1, 1e-3)  # the paper's penalty every step, its lr
    assert cfg.preset_notes == []
    # other families have no CPU preset
    assert C.resolve("dcgan", [cpu]).preset_notes == []
