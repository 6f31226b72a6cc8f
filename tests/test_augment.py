"""DiffAugment ops and ADA's p controller: ranges from the papers, exact identity at p=0, replayable RNG."""
from __future__ import annotations

import io

import pytest
import torch

from ganforge.augment import POLICIES, AdaptiveP, augment, parse_policy

ALL = POLICIES


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)  # augment draws from the global RNG; a fixed seed keeps every test deterministic


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.float().contiguous().view(torch.int32)


def images(n=16, c=3, h=32, w=32, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g) * 2 - 1).to(dtype)


# ---- parse_policy ----

def test_parse_policy():
    assert parse_policy("color,translation") == ("color", "translation")
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert parse_policy("") == ()
    assert parse_policy("color,translation,cutout") == POLICIES


def test_unknown_op_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"'colour'.*color, translation, cutout"):
        parse_policy("colour,translation")
    with pytest.raises(ValueError, match="'flip'"):
        augment(images(2), ("flip",))


# ---- augment: contract ----

@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ops", [("color",), ("translation",), ("cutout",), ALL])
def test_shape_dtype_device_kept(c, dtype, ops):
    x = images(4, c, 16, 24, dtype=dtype)
    y = augment(x, ops, torch.tensor(0.5))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y.float()).all()


def test_no_ops_is_identity():
    x = images(2)
    assert augment(x, ()) is x


@pytest.mark.parametrize("ops", [("translation", "cutout"), ALL])
def test_channels_last_gives_the_same_values_and_keeps_its_layout(ops):
    x = images(8)
    torch.manual_seed(0)
    want = augment(x, ops)
    torch.manual_seed(0)
    got = augment(x.contiguous(memory_format=torch.channels_last), ops)
    if "color" in ops:  # the means reduce in another order
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    else:
        assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("op", ALL)
@pytest.mark.parametrize("p", [0.0, torch.tensor(0.0)])
def test_p0_returns_x_bitwise(op, p):
    x = images(16, 3)
    x[:, :, 0, 0] = -0.0  # x + 0 would turn these into +0.0
    assert torch.equal(bits(augment(x, (op,), p)), bits(x))


@pytest.mark.parametrize("op", ALL)
def test_p1_changes_images(op):
    x = images(64, 3)
    y = augment(x, (op,))
    changed = (y != x).flatten(1).any(1)
    # translation draws a (0, 0) shift 1 time in 25; color and cutout always change a sample
    assert changed.float().mean() >= (0.8 if op == "translation" else 1.0)


def test_samples_are_augmented_independently():
    x = images(1).expand(32, -1, -1, -1).contiguous()
    y = augment(x, ALL)
    assert len({bits(yi).sum().item() for yi in y}) > 16


def test_p_gates_each_sample():
    x = images(2000, 1, 8, 8)
    for p in (0.25, 0.75):
        y = augment(x, ("cutout",), torch.tensor(p))
        hit = (y != x).flatten(1).any(1).float().mean().item()
        assert abs(hit - p) < 0.05


# ---- augment: each op does what the paper's code does ----

def test_translation_moves_content_by_at_most_an_eighth_with_zero_fill():
    n, h, w = 512, 32, 24  # not square: catches swapped axes (max shifts 4 and 3)
    x = (torch.arange(h * w, dtype=torch.float32) + 1).view(1, 1, h, w).expand(n, 2, h, w).contiguous()
    y = augment(x, ("translation",))
    seen = set()
    for yi in y:
        # a pixel near the centre is never shifted out; where it lands gives the shift
        landed = (yi[0] == x[0, 0, h // 2, w // 2]).nonzero()
        assert len(landed) == 1
        dy, dx = (landed[0] - torch.tensor([h // 2, w // 2])).tolist()
        assert abs(dy) <= h // 8 and abs(dx) <= w // 8
        seen.add((dy, dx))
        want = torch.zeros(2, h, w)
        want[:, max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
            x[0, :, max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
        assert torch.equal(yi, want)
    assert {dy for dy, _ in seen} == set(range(-4, 5)) and {dx for _, dx in seen} == set(range(-3, 4))


def test_single_bright_pixel_keeps_its_value():
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 10, 20] = 1.0
    y = augment(x, ("translation",))
    assert torch.equal(y.flatten(1).sum(1), torch.ones(64))
    assert torch.equal(y.flatten(1).max(1).values, torch.ones(64))


def test_cutout_zeroes_a_square_of_half_the_side():
    n, h, w = 256, 32, 24
    y = augment(torch.ones(n, 3, h, w), ("cutout",))
    assert torch.equal(y.amin(1), y.amax(1))  # the same hole in every channel
    full, sides = 0, set()
    for yi in y[:, 0]:
        rows, cols = (yi == 0).nonzero().unbind(1)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert (yi[top:bottom, left:right] == 0).all() and len(rows) == (bottom - top) * (right - left)
        # half the side, clipped to between a quarter and a half where the centre is near an edge
        assert h // 4 <= bottom - top <= h // 2 and w // 4 <= right - left <= w // 2
        full += int(bottom - top == h // 2 and right - left == w // 2)
        sides.add((int(bottom - top), int(right - left)))
    assert full > n // 8
    # the centre ranges over the whole image, so the square is often clipped, down to a quarter of the side
    assert min(r for r, _ in sides) == h // 4 and min(c for _, c in sides) == w // 4
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_color_brightness_and_contrast_ranges_on_gray_images():
    # gray images: saturation is a no-op, so out = (x - m) * k + m + b with b ~ U(-0.5, 0.5), k ~ U(0.5, 1.5)
    n = 512
    x = images(n, 1, 8, 8).expand(n, 3, 8, 8).contiguous()
    y = augment(x, ("color",))
    assert torch.allclose(y.amin(1), y.amax(1))  # still gray
    b = y.mean((1, 2, 3)) - x.mean((1, 2, 3))
    k = y.std((1, 2, 3)) / x.std((1, 2, 3))
    assert (b.abs() <= 0.5 + 1e-5).all() and b.min() < -0.4 and b.max() > 0.4
    assert (k >= 0.5 - 1e-4).all() and (k <= 1.5 + 1e-4).all() and k.min() < 0.6 and k.max() > 1.4


def test_color_saturation_scales_around_the_channel_mean():
    # channels (a, -a, 0): pixel mean 0, so colour spread is scaled by saturation U(0, 2) times contrast
    a = images(256, 1, 8, 8)
    x = torch.cat([a, -a, torch.zeros_like(a)], 1)
    y = augment(x, ("color",))
    spread = y - y.mean(1, keepdim=True)
    r = spread[:, 0].flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)
    assert torch.allclose(spread[:, 1], -spread[:, 0], atol=1e-5)
    assert (r <= 3 + 1e-4).all() and r.min() < 0.2 and r.max() > 2.0


def test_color_transforms_are_gated_independently():
    # ADA applies each transform on its own coin: at p=0.5 some gray images get brightness only, some
    # contrast only (saturation does nothing to gray)
    n = 256
    x = images(n, 1, 8, 8).expand(n, 3, 8, 8).contiguous()
    y = augment(x, ("color",), torch.tensor(0.5))
    bright = (y.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs() > 1e-4
    contrast = (y.std((1, 2, 3)) / x.std((1, 2, 3)) - 1).abs() > 1e-4
    for want in [(True, False), (False, True), (True, True), (False, False)]:
        share = ((bright == want[0]) & (contrast == want[1])).float().mean()
        assert 0.15 < share < 0.35


def test_color_on_one_channel_changes_mean():
    x = images(64, 1)
    y = augment(x, ("color",))
    assert y.shape == x.shape
    assert ((y.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs() > 1e-3).float().mean() > 0.9


# ---- augment: gradients and randomness ----

@pytest.mark.parametrize("ops", [("color",), ("translation",), ("cutout",), ALL])
def test_gradients_reach_x(ops):
    x = images(8, 3).requires_grad_()
    y = augment(x, ops)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()
    if ops == ("cutout",):  # D sees nothing of the hole, so G gets no gradient there
        assert torch.equal(x.grad == 0, y.detach() == 0)


def test_same_seed_same_output():
    x = images(16, 3)
    torch.manual_seed(7)
    a = augment(x, ALL, torch.tensor(0.5))
    torch.manual_seed(7)
    b = augment(x, ALL, torch.tensor(0.5))
    torch.manual_seed(8)
    c = augment(x, ALL, torch.tensor(0.5))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_rng_consumption_does_not_depend_on_p_or_dtype():
    after = []
    for p, dtype in [(0.3, torch.float32), (0.9, torch.float32), (0.0, torch.float32),
                     (torch.tensor(0.0), torch.float32),
                     (1.0, torch.bfloat16)]:
        torch.manual_seed(3)
        augment(images(16, 3, dtype=dtype), ALL, p)
        after.append(torch.rand(1))
    assert all(torch.equal(t, after[0]) for t in after)


def test_no_host_reads(monkeypatch):
    # a python-side read of a tensor value would be a CUDA sync in training; none may happen per step
    x = images(8, 3)
    ada = AdaptiveP(interval=2, ada_kimg=0.01)

    def boom(*_a, **_k):
        raise AssertionError("host read of a tensor")

    with monkeypatch.context() as m:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            m.setattr(torch.Tensor, name, boom)
        for _ in range(4):
            augment(x, ALL, ada.p)
            ada.observe(torch.randn(8))
            ada.step(8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_sync():
    x = images(64, 3).cuda().requires_grad_()
    ada = AdaptiveP(interval=2, ada_kimg=0.01, device="cuda")
    augment(x, ALL, ada.p)  # warm-up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            y = augment(x, ALL, ada.p)
            y.sum().backward()
            ada.observe(y.mean((1, 2, 3)))
            ada.step(64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert 0 <= ada.p.item() <= 1


# ---- AdaptiveP ----

def test_p_rises_by_exactly_the_paper_step_when_d_is_sure_of_reals():
    ada = AdaptiveP()  # target 0.6, interval 4, 500 kimg
    step = 64 * 4 / 500_000
    for k in range(1, 4):
        before = ada.p.clone()
        for i in range(4):
            assert torch.equal(ada.p, before)  # only every `interval` steps
            ada.observe(torch.full((64, 1), 3.0))
            ada.step(64)
        assert ada.p.dtype == torch.float32 and ada.p.dim() == 0
        torch.testing.assert_close(ada.p - before, torch.tensor(step), rtol=0, atol=1e-8)
        assert torch.equal(ada.rt(), torch.tensor(1.0))


@pytest.mark.parametrize("sign, p_init, want", [(1.0, 0.0, [0.3, 0.6, 0.9, 1.0, 1.0]),
                                                (-1.0, 1.0, [0.7, 0.4, 0.1, 0.0, 0.0])])
def test_p_clamps(sign, p_init, want):
    ada = AdaptiveP(interval=3, ada_kimg=0.1, p_init=p_init)  # step 10 * 3 / 100 = 0.3
    got = []
    for _ in range(5):
        for _ in range(3):
            ada.observe(torch.full((10,), sign))
            ada.step(10)
        got.append(ada.p.clone())
    torch.testing.assert_close(torch.stack(got), torch.tensor(want), rtol=0, atol=1e-6)
    assert ada.rt().item() == sign


def test_rt_averages_every_observed_real_since_the_last_update():
    ada = AdaptiveP(interval=4, ada_kimg=0.1, p_init=0.5)
    for s in (-1.0, 1.0, 1.0, 1.0):  # r_t = 0.5 < 0.6: down, though the last batch alone says up
        ada.observe(torch.full((8,), s))
        ada.step(8)
    assert ada.rt().item() == 0.5 and ada.p.item() < 0.5
    for s in (-1.0, 1.0, 1.0, 1.0, 1.0):  # r_t = 0.6 exactly: sign(0) keeps p
        ada.observe(torch.full((5,), s))
    before = ada.p.clone()
    for _ in range(4):
        ada.step(8)
    assert torch.equal(ada.p, before)
    for _ in range(4):  # nothing observed: p stays put
        ada.step(8)
    assert torch.equal(ada.p, before)


def test_state_dict_resumes_identically():
    torch.manual_seed(0)
    logits = [torch.randn(16) + 1.0 for _ in range(20)]
    a = AdaptiveP(interval=4, ada_kimg=1.0)
    for t in logits[:6]:  # stop mid-interval: the accumulators and counter must travel too
        a.observe(t)
        a.step(16)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    saved = {k: v.clone() for k, v in a.state_dict().items()}
    b = AdaptiveP(interval=4, ada_kimg=1.0)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for t in logits[6:]:
        for ada in (a, b):
            ada.observe(t)
            ada.step(16)
        assert torch.equal(a.p, b.p) and torch.equal(a.rt(), b.rt())
    assert 0 < a.p.item() < 1
    assert not torch.equal(a.state_dict()["p"], saved["p"])  # state_dict hands out copies, not live tensors
    assert set(saved) >= {"p", "calls"} and all(isinstance(v, torch.Tensor) for v in saved.values())


# ---- every recipe that offers it: what D scores goes through the ops ----

def _augmenting_models() -> list[str]:
    from ganforge import config as C
    from ganforge.registry import list_models

    return [m for m in list_models() if hasattr(C.new_config(m).recipe, "augment")]


@pytest.mark.parametrize("on", [True, False], ids=["augment", "off"])
@pytest.mark.parametrize("model", _augmenting_models())
def test_every_image_d_scores_goes_through_the_ops_penalties_included(model, on, fake_fashion, monkeypatch):
    # One training step at step 0 runs every phase, lazy penalties included (R1, WGAN-GP). Each tensor D is
    # called on must be an output of augment() when recipe.augment is set, and augment() is never called when
    # it is not (the papers' setting, the default).
    import ganforge.augment as A
    from conftest import tiny_layers
    from ganforge import config as C
    from ganforge.recipes import to_device
    from ganforge.train.loop import build

    made, seen = [], []
    real_augment = A.augment

    def spy(x, ops, p=1.0):
        made.append(real_augment(x, ops, p))
        return made[-1]

    monkeypatch.setattr(A, "augment", spy)
    layers = tiny_layers(model, steps=1, compile="off") + [{"recipe": {"augment": "color" if on else ""}}]
    s = build(C.resolve(model, layers), 1)
    s.recipe.D.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    g = torch.Generator().manual_seed(0)
    R = s.G(**s.recipe.inputs(1, g)).shape[-1]  # the stage the built networks run
    seen.clear()
    batch = {"image": torch.rand(8, 1, R, R, generator=g) * 2 - 1}
    s.train_step(batch, to_device(s.recipe.inputs(8, g, batch), s.device), 0)
    penalty = any(getattr(s.cfg.recipe, k, 0) > 0 for k in ("r1_gamma", "gp_weight"))  # at step 0, lazy or not
    assert len(seen) >= 3 + penalty  # real, fake, fake again for G; a penalty's own forward
    if on:
        # an augmented tensor or a detached view of one (WGAN-GP takes D's gradient at the augmented mix)
        strays = [i for i, x in enumerate(seen) if not any(x.data_ptr() == y.data_ptr() and x.shape == y.shape
                                                           for y in made)]
        assert not strays, f"D scored {len(strays)} of {len(seen)} inputs without augmentation"
    else:
        assert not made


def test_every_family_but_the_translator_takes_augmentation():
    assert set(_augmenting_models()) == {"gan", "dcgan", "sagan", "progan", "stylegan", "stylegan2"}


def test_ada_is_refused_where_the_loss_has_no_decision_boundary_and_a_fixed_p_is_taken():
    from conftest import tiny_layers
    from ganforge import config as C
    from ganforge.registry import GanforgeError

    layers = tiny_layers("progan") + [{"recipe": {"augment": "color,translation"}}]
    with pytest.raises(GanforgeError, match="recipe.ada cannot be used with train.loss=wasserstein.*decision "
                                            "boundary.*augment_p"):
        C.resolve("progan", layers + [{"recipe": {"ada": True}}])
    with pytest.raises(GanforgeError, match="recipe.ada cannot be used with train.loss=wasserstein"):
        C.resolve("stylegan2", tiny_layers("stylegan2") + [{"train": {"loss": "wasserstein"}}, {"recipe": {
            "augment": "color", "ada": True}}])
    assert C.resolve("progan", layers + [{"recipe": {"augment_p": 0.5}}]).recipe.augment_p == 0.5
    for model in ("progan", "stylegan", "stylegan2"):
        with pytest.raises(GanforgeError, match="recipe.augment.*unknown augmentation 'flip'"):
            C.resolve(model, tiny_layers(model) + [{"recipe": {"augment": "flip"}}])
        assert C.resolve(model, tiny_layers(model)).recipe.augment == ""  # off unless asked for


def test_ada_reads_the_sign_around_the_losss_decision_boundary():
    # LSGAN's boundary is 0.5: a D that scores every real at 0.4 does not overfit them (r_t = -1, p stays at 0),
    # although every score is positive
    from ganforge.augment import AugmentConfig, DAugment

    rc = AugmentConfig(augment="color", ada=True, ada_interval=1, ada_kimg=0.001)
    for boundary, want in ((0.5, 0.0), (0.0, 1.0)):
        aug = DAugment(rc, "cpu", boundary)
        stats = aug.observe(torch.full((8,), 0.4))
        assert stats["aug/p"].item() == want and aug.on == (want > 0)
