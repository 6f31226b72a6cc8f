"""pix2pix (Isola et al. 2017): the U-Net's skips, the PatchGAN's map and receptive field, D conditioned on the
input, the loss (cGAN + lambda L1, D halved), test-time dropout, save/load/translate, the CLI verbs, and a
hand-drawn edge map translated by a model trained on real edges2fashion (slow)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ganforge
from ganforge import config as C
from ganforge.losses import LOSSES
from ganforge.models.pix2pix import (RECEPTIVE_FIELDS, PatchDiscriminator, Pix2PixConfig, UNetGenerator,
                                     auto_receptive_field, patch_receptive_field)
from ganforge.registry import GanforgeError
from ganforge.train.loop import build, train

from conftest import assert_one_line_error, run_main, tiny_layers


def tiny_setup(**recipe):
    layers = tiny_layers("pix2pix") + ([{"recipe": recipe}] if recipe else [])
    return build(C.resolve("pix2pix", layers), channels=1, device=torch.device("cpu"))


def pair_batch(n=6, channels=1, r=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, channels, r, r, generator=g) * 2 - 1,
            "source": torch.rand(n, channels, r, r, generator=g) * 2 - 1}


# ------------------------------------------------------------------------------------------ the networks

@pytest.mark.parametrize("resolution", [16, 32, 64, 256])
def test_unet_skips_join_maps_of_the_same_size_down_to_1x1(resolution):
    cfg = Pix2PixConfig(ngf=4)
    torch.manual_seed(0)
    G = UNetGenerator(cfg, resolution, 3, 1)
    depth = int(np.log2(resolution))
    assert G.depth == depth  # down to 1x1, as the paper's 8 levels at 256px
    seen = {}
    for i, layer in enumerate(G.down):
        layer.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(("down", i), tuple(out.shape)))
    for j, layer in enumerate(G.up):
        layer.register_forward_hook(lambda m, a, out, j=j: seen.__setitem__(("up", j), tuple(out.shape)))
    x = torch.randn(2, 3, resolution, resolution)
    y = G(x)
    assert y.shape == (2, 1, resolution, resolution) and y.abs().max() <= 1  # tanh, the target's channels
    for i in range(depth):  # encoder level i: widths 1, 2, 4, 8, 8... x ngf at R / 2^(i+1)
        assert seen[("down", i)] == (2, 4 * min(8, 2 ** i), resolution >> (i + 1), resolution >> (i + 1))
    assert seen[("down", depth - 1)][2:] == (1, 1)
    for j in range(depth - 1):  # decoder layer j meets encoder level depth-2-j: same size and width
        i = depth - 2 - j
        assert seen[("up", j)] == seen[("down", i)], f"decoder layer {j} does not match encoder level {i}"
    # the skips carry information: the output depends on the input at every scale
    G.eval()
    for m in G.modules():
        if hasattr(m, "at_test"):
            m.at_test = False
    x0 = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    x1 = x0.clone()
    x1[..., 0, 0] += 5.0  # one corner pixel: reaches the output's corner through the outermost skip
    assert (G(x0) - G(x1))[..., :2, :2].abs().max() > 0


def test_the_papers_networks_at_256px():
    with torch.device("meta"):
        G = UNetGenerator(Pix2PixConfig(), 256, 3)
        D = PatchDiscriminator(Pix2PixConfig(), 256, 3)
    assert [G.widths[i] for i in range(8)] == [64, 128, 256, 512, 512, 512, 512, 512]  # C64-...-C512
    assert round(sum(p.numel() for p in G.parameters()) / 1e6, 2) == 54.41  # the reference U-Net-256
    assert round(sum(p.numel() for p in D.parameters()) / 1e6, 2) == 2.77   # the reference 70x70 PatchGAN
    assert D.receptive_field == 70 and D.map_size(256) == 30
    # dropout in the first three decoder layers only, kept at test time
    drops = [any(hasattr(m, "at_test") for m in layer.modules()) for layer in G.up]
    assert drops == [True, True, True] + [False] * 4
    # batch norm everywhere but G's first and innermost layers and D's first
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in G.down[0].modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in G.down[-1].modules())


@pytest.mark.parametrize("rf", sorted(RECEPTIVE_FIELDS))
def test_patchgan_receptive_field_and_map_size(rf):
    r = 3 * 2 ** RECEPTIVE_FIELDS[rf] if rf > 70 else 128
    D = PatchDiscriminator(Pix2PixConfig(ndf=2, receptive_field=rf, norm="none"), r, 1)
    assert D.receptive_field == rf == patch_receptive_field(RECEPTIVE_FIELDS[rf])
    x = torch.zeros(1, 1, r, r, requires_grad=True)
    out = D(x, torch.zeros(1, 1, r, r))
    assert out.shape[-1] == D.map_size(r) == r // 2 ** RECEPTIVE_FIELDS[rf] - 2
    # the pixels one logit sees, found by its gradient, span the receptive field (an interior logit)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    assert rows.max() - rows.min() + 1 == min(rf, r)


def test_auto_receptive_field_scales_the_papers_70_of_256():
    assert [auto_receptive_field(r) for r in (32, 64, 128, 256, 512)] == [16, 16, 34, 70, 142]
    with pytest.raises(ValueError, match="receptive_field"):
        PatchDiscriminator(Pix2PixConfig(receptive_field=50), 64, 1)
    with pytest.raises(ValueError, match="at least"):
        PatchDiscriminator(Pix2PixConfig(receptive_field=70), 16, 1)


def test_d_sees_the_input_concatenated_with_the_output():
    D = PatchDiscriminator(Pix2PixConfig(ndf=4), 16, 3)
    assert D.net[0].in_channels == 6  # input image and output image, channel-stacked
    y, a, b = torch.randn(3, 2, 3, 16, 16).unbind(0)
    assert not torch.equal(D(y, a), D(y, b))  # the same output judged against another input
    # the concatenation is [input, output]: D's weights on the first 3 channels see the input
    with torch.no_grad():
        D.net[0].weight[:, 3:] = 0
    assert torch.equal(D(y, a), D(torch.randn_like(y), a))
    with pytest.raises(ValueError, match="pairs"):
        D(y)
    D_unc = PatchDiscriminator(Pix2PixConfig(ndf=4, d_conditional=False), 16, 3)  # the "L1 + GAN" ablation
    assert D_unc.net[0].in_channels == 3 and torch.equal(D_unc(y, a), D_unc(y, b))


def test_test_time_dropout_is_the_papers_noise_and_switchable():
    G = UNetGenerator(Pix2PixConfig(ngf=4), 16, 1).eval()
    x = torch.randn(2, 1, 16, 16)
    assert not torch.equal(G(x), G(x))  # dropout on at test time (the paper)
    torch.manual_seed(3)
    a = G(x)
    torch.manual_seed(3)
    assert torch.equal(a, G(x))  # ... drawn from the torch RNG: a seed fixes it
    off = UNetGenerator(Pix2PixConfig(ngf=4, test_dropout=False), 16, 1).eval()
    assert torch.equal(off(x), off(x))
    off.train()  # switched off for translation only: training still draws it
    assert not torch.equal(off(x), off(x))


def test_pix2pix_keeps_no_ema_generator():
    with pytest.raises(GanforgeError, match="train.ema=false"):
        C.resolve("pix2pix", [{"data": {"name": "edges2fashion"}, "train": {"ema": True}}])


# ------------------------------------------------------------------------------------------ the loss

def test_loss_is_cgan_plus_lambda_l1_and_d_is_halved():
    s = tiny_setup()
    batch = pair_batch()
    inputs = s.recipe.inputs(6, None, batch)
    assert torch.equal(inputs["source"], batch["source"])
    torch.manual_seed(0)
    ctx = s.recipe.begin_step(batch, inputs)
    d = s.recipe.losses("D", ctx)
    g = s.recipe.losses("G", ctx)
    fake = ctx["fake"].float()
    with torch.no_grad():
        real_logits = s.D(batch["image"], batch["source"]).float()
        fake_logits = s.D(fake, batch["source"]).float()
    d_loss, g_loss = LOSSES["nonsaturating"]
    assert torch.allclose(d["loss/D"], 0.5 * d_loss(real_logits, fake_logits), atol=1e-5)
    assert torch.allclose(g["loss/L1"], 100 * (fake - batch["image"]).abs().mean(), rtol=1e-5)
    assert torch.allclose(g["loss/G"], g_loss(fake_logits), atol=1e-5)
    # lambda is applied as configured
    s10 = tiny_setup(lambda_l1=10.0)
    ctx = s10.recipe.begin_step(batch, s10.recipe.inputs(6, None, batch))
    s10.recipe.losses("D", ctx)
    g10 = s10.recipe.losses("G", ctx)
    assert torch.allclose(g10["loss/L1"], 10 * (ctx["fake"].float() - batch["image"]).abs().mean(), rtol=1e-5)


def test_l1_alone_never_runs_or_trains_d():
    s = tiny_setup(lambda_gan=0.0)
    assert [p.name for p in s.recipe.phases] == ["G"]
    before = [p.detach().clone() for p in s.D.parameters()]
    calls = []
    s.D.register_forward_hook(lambda *a: calls.append(1))
    batch = pair_batch()
    out = s.train_step(batch, s.recipe.inputs(6, None, batch))
    assert "loss/G" not in out and out["loss/L1"] > 0 and not calls
    assert all(torch.equal(a, b) for a, b in zip(before, s.D.parameters()))
    with pytest.raises(GanforgeError, match="lambda"):
        tiny_setup(lambda_gan=0.0, lambda_l1=0.0)


def test_a_translator_has_no_latent_to_sample():
    s = tiny_setup()
    with pytest.raises(GanforgeError, match="translate"):
        s.recipe.inputs(4, torch.Generator())


# ------------------------------------------------------------------------------------------ a run

@pytest.fixture
def tiny_run(fake_fashion, tmp_path):
    from conftest import write_idx

    write_idx(fake_fashion, n=48, split="test", seed=1)  # held-out pairs for eval and translation
    run = tmp_path / "run"
    train(C.resolve("pix2pix", tiny_layers("pix2pix", steps=4)), run, progress=False)
    return run


def test_grids_show_input_output_and_target(tiny_run):
    from PIL import Image

    w, h = Image.open(tiny_run / "samples" / "step_00000004.png").size
    # the tiny run's grid of 4 images holds one triple (input | output | target): one row of three 16px images
    # with 2px padding (56 x 20), shown enlarged
    assert w * 20 == h * 56


def test_save_load_translate_gives_the_trained_generators_outputs(tiny_run, fake_fashion):
    from ganforge.data import load_data
    from ganforge.data.sources import to_unit_range
    from ganforge.train.checkpoint import newest_checkpoint
    from ganforge.train.loop import Trainer

    gen = ganforge.load(tiny_run)
    assert gen.translates and not gen.conditional and gen.z_dim == 0
    data = load_data("edges2fashion", 16, split="test", needs={"image", "source"})
    source = to_unit_range(data.take(torch.arange(5))["source"])
    cfg = C.resolve("pix2pix", tiny_layers("pix2pix", steps=4))
    trainer = Trainer(cfg, tiny_run, load_data("edges2fashion", 16, needs={"image", "source"}), progress=False)
    trainer.restore(newest_checkpoint(tiny_run))
    G = trainer.s.G.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(7)
        expected = G(source=source).float().clamp(-1, 1)
    assert torch.equal(gen.translate(source, seed=7), expected)
    assert not torch.equal(gen.translate(source, seed=8), expected)  # the seed draws the dropout
    # another size: resized to the model's and back; grey in, grey out
    big = torch.nn.functional.interpolate(source, size=(40, 40), mode="bilinear")
    assert gen.translate(big).shape == (5, 1, 40, 40)
    assert torch.equal(ganforge.translate(tiny_run, source, seed=7), expected)
    with pytest.raises(GanforgeError, match="no latent"):
        gen.sample(2)


def test_translate_and_eval_through_the_cli(tiny_run, tmp_path, capsys):
    from PIL import Image, ImageDraw

    folder = tmp_path / "drawings"
    (folder / "sub").mkdir(parents=True)
    for name, size in (("a.png", (16, 16)), ("sub/b.jpg", (40, 30))):
        img = Image.new("L", size, 255)
        ImageDraw.Draw(img).rectangle([3, 3, size[0] - 4, size[1] - 4], outline=0)
        img.convert("RGB").save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    proc = run_main(["translate", str(tiny_run), "--input", str(folder), "--out", str(out)], capsys)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 unreadable file(s): broken.png" in proc.stderr  # reported, not a crash
    assert Image.open(out / "a.png").size == (16, 16) and Image.open(out / "sub" / "b.png").size == (40, 30)
    assert Image.open(out / "a.png").mode == "L"  # the model's channels
    # nothing is overwritten without --force; one file works too
    assert_one_line_error(run_main(["translate", str(tiny_run), "--input", str(folder), "--out", str(out)], capsys),
                          "exists")
    proc = run_main(["translate", str(tiny_run), "--input", str(folder / "a.png"), "--out", str(tmp_path / "one"),
                     "--compare", "--no-dropout"], capsys)
    assert proc.returncode == 0 and Image.open(tmp_path / "one" / "a.png").size == (32, 16)
    assert_one_line_error(run_main(["translate", str(tiny_run), "--input", str(folder / "broken.png"), "--out",
                                    str(tmp_path / "x")], capsys), "broken.png")
    assert_one_line_error(run_main(["sample", str(tiny_run), "--n", "2", "--out", str(tmp_path / "s")], capsys),
                          "translate")
    proc = run_main(["eval", str(tiny_run), "--n", "40", "--metrics", "fid", "--device", "cpu"], capsys)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert 0 < res["l1"] < 1 and res["fid"] > 0 and res["pairs"]["split"] == "test" and res["pairs"]["n"] == 40
    assert res["extractor"] == "fashion-mnist-classifier"  # the targets' domain classifier


def test_translate_refuses_a_model_that_samples(fake_fashion, tmp_path, capsys):
    run = tmp_path / "dcgan"
    train(C.resolve("dcgan", tiny_layers("dcgan", steps=2)), run, progress=False)
    (tmp_path / "in.png").write_bytes(b"")
    assert_one_line_error(run_main(["translate", str(run), "--input", str(tmp_path / "in.png"), "--out",
                                    str(tmp_path / "o")], capsys), "dcgan", "translat")


def test_paired_models_refuse_unpaired_data(fake_fashion, tmp_path, capsys):
    assert_one_line_error(run_main(["train", "pix2pix", "--data", "fashion-mnist", "--steps", "1", "--quiet",
                                    "--out", str(tmp_path / "r")], capsys), "edges2fashion")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------ real data

@pytest.mark.slow
def test_a_hand_drawn_edge_map_becomes_a_garment(tmp_path):
    """Trains on the real edges2fashion for 6 minutes, then translates outlines drawn with Pillow (a T-shirt, a
    pullover, trousers, a dress, a bag, a sneaker; benchmarks/translation.py draws the same for the README): each
    output must be filled inside its outline and dark outside it, and the domain classifier must read most of
    them as their kind of garment."""
    import sys
    from pathlib import Path

    from ganforge.data.sources import locate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from translation import OUTLINES, draw_outlines, read_outputs

    try:
        locate("fashion-mnist", download=False)
    except GanforgeError:
        pytest.skip("needs the real Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    run = tmp_path / "run"
    train(C.resolve("pix2pix", [{"data": {"name": "edges2fashion"},
                                 "train": {"minutes": 6, "sample_every": 0, "checkpoint_every": 10**6}}]),
          run, progress=False)
    gen = ganforge.load(run)
    x, y, seen = read_outputs(gen)
    _, masks = draw_outlines()
    for (kind, _, _, _), out, inside in zip(OUTLINES, y[:, 0], masks):
        assert out[inside].mean() > out[~inside].mean() + 0.5, f"the drawn {kind} is not filled inside its outline"
    right = [got in ok for (_, _, ok, _), got in zip(OUTLINES, seen)]
    # measured on a 15-minute run: all six read as their kind (the sneaker as a sandal, footwear either way)
    assert sum(right) >= 5, f"drawn outlines read as {dict(zip([o[0] for o in OUTLINES], seen))}"
