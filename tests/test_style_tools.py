"""The style-based tools (ganforge.style_tools, W space in ganforge.sampling, and their CLI verbs) on tiny trained
StyleGAN and StyleGAN2 runs: truncation by psi, style mixing, stochastic variation, W interpolation,
projection, and the one clear error every tool gives on a model without a mapping network."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import (
    TINY,
    assert_one_line_error,
    run_cli,
    run_main,
    synthetic_fashion,
    tiny_layers,
)
from PIL import Image

import ganforge
from ganforge import config as C
from ganforge import style_tools as T
from ganforge.registry import GanforgeError
from ganforge.sampling import interpolate, interpolation_ws
from ganforge.train.loop import train

STYLE_MODELS = ("stylegan2", "stylegan")
MAPPING_ERROR = "needs a model with a mapping network (stylegan, stylegan2)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs on synthetic Fashion-MNIST: both style models (16px, 4 steps), v1 without noise inputs (2 steps),
    a 64px StyleGAN2 (the only size with all three style groups) and a DCGAN (no mapping network)."""
    tmp = tmp_path_factory.mktemp("style-runs")
    cache = tmp / "cache"
    with synthetic_fashion(cache) as env:
        paths = {}
        for name, model, layers in [
            ("stylegan2", "stylegan2", tiny_layers("stylegan2", steps=4, sample_every=0)),
            ("stylegan", "stylegan", tiny_layers("stylegan", steps=4, sample_every=0)),
            ("stylegan-quiet", "stylegan", tiny_layers("stylegan", steps=2, sample_every=0)
             + [{"arch": {"use_noise": False}}]),
            ("stylegan2-64", "stylegan2", [{"data": {"resolution": 64}, "train": {"steps": 1, "batch_size": 4,
                                                                                   "sample_every": 0}},
                                           TINY["stylegan2"]]),
            ("dcgan", "dcgan", tiny_layers("dcgan", steps=1, sample_every=0)),
        ]:
            paths[name] = tmp / name
            train(C.resolve(model, layers), paths[name], progress=False)
        # a training image, as a file: what projection should find
        from ganforge.data import load_data

        data = load_data("fashion-mnist", 16)
        paths["image"] = tmp / "train0.png"
        Image.fromarray(data.images[0, 0].numpy()).save(paths["image"])
    return SimpleNamespace(tmp=tmp, cache=cache, env=env, data=data, **{k.replace("-", "_"): v
                                                                        for k, v in paths.items()})


@pytest.fixture(scope="module", params=STYLE_MODELS)
def gen(request, runs):
    """A loaded style model. The 4-step StyleGAN run is still at its 4x4 stage, where the styles of 8px and up
    change nothing: its full network runs here, so that every style acts and every assertion can fail."""
    g = ganforge.load(getattr(runs, request.param))
    if request.param == "stylegan":
        g.net.set_growth(16)
    return g


@contextmanager
def noise_off(g):
    """The model with its noise strengths zeroed (then restored): noise inputs change nothing."""
    params = [p for name, p in g.net.named_parameters() if "noise" in name]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.zero_()
    try:
        yield g
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


# ------------------------------------------------------------------------------------------ truncation (psi)

def test_psi_zero_gives_every_latent_the_average_image_and_psi_one_is_none(gen):
    inputs = gen.inputs(4, seed=0, truncation=0)
    assert inputs["psi"] == 0.0
    assert torch.equal(inputs["z"], gen.inputs(4, seed=0)["z"])       # psi leaves z alone
    ws = gen.ws(inputs)
    assert torch.equal(ws, gen.net.mapping.w_avg.cpu().expand_as(ws))  # every style is the tracked mean
    fixed = {**inputs, "noise": [t[:1].expand_as(t) for t in inputs["noise"]]}
    images = gen.generate(fixed)
    for x in images[1:]:
        torch.testing.assert_close(x, images[0], atol=1e-6, rtol=0)
    untruncated = gen.generate({**fixed, "psi": 1.0})
    assert not torch.allclose(untruncated[0], untruncated[1], atol=1e-3)  # the same noise: only z differs
    assert torch.equal(gen.sample(4, seed=3, truncation=1), gen.sample(4, seed=3))
    half = gen.sample(4, seed=3, truncation=0.5)
    assert not torch.equal(half, gen.sample(4, seed=3)) and not torch.equal(half, gen.sample(4, seed=3, truncation=0))
    gen.sample(2, truncation=-0.7)  # any finite psi: negative ones are the paper's "anti-faces"
    with pytest.raises(GanforgeError, match="finite"):
        gen.sample(2, truncation=float("nan"))


def test_truncation_strip_goes_from_the_seeds_to_the_average(gen):
    fig = T.truncation_strip(gen, [0, 1, 2])
    assert fig.tiles.shape == (3, 5, gen.channels, 16, 16)
    assert fig.cols == ["psi 1", "psi 0.75", "psi 0.5", "psi 0.25", "psi 0"]
    plain = torch.cat([gen.sample(1, seed=s) for s in (0, 1, 2)])
    torch.testing.assert_close(fig.tiles[:, 0], plain, atol=1e-4, rtol=0)  # psi 1: the seeds' own samples
    flat = T.truncation_strip(gen, [0, 1, 2], psis=[1, 0], noise=False)
    torch.testing.assert_close(flat.tiles[1, 1], flat.tiles[0, 1], atol=1e-6, rtol=0)  # psi 0: one image
    assert not torch.allclose(flat.tiles[1, 0], flat.tiles[0, 0], atol=1e-3)          # psi 1: the seeds differ


# ------------------------------------------------------------------------------------------ style mixing

def test_crossover_k_takes_the_styles_before_k_from_the_first_latent(gen):
    G = gen.net
    z1, z2, z3 = (gen.latents(2, seed=s).to(gen.device) for s in (1, 2, 3))
    with torch.no_grad():
        a, b = G.ws(z1), G.ws(z2)
        for k in range(1, G.num_ws):
            mixed = G.ws(z1, z2, mix_cutoff=k)
            assert torch.equal(mixed[:, :k], a[:, :k]) and torch.equal(mixed[:, k:], b[:, k:])
        # in the images: the second latent matters through the styles >= k, and only through them
        k = G.num_ws - 1
        first = gen.synthesize(G.ws(z1, z2, mix_cutoff=k))
        assert not torch.allclose(first, gen.synthesize(G.ws(z1, z3, mix_cutoff=k)), atol=1e-4)
        swap = G.ws(z1, z3, mix_cutoff=k).clone()
        swap[:, k:] = b[:, k:]
        torch.testing.assert_close(gen.synthesize(swap), first, atol=1e-6, rtol=0)


def test_mix_grid_has_the_sources_on_its_edges_and_mixed_styles_inside(gen):
    rows, cols = [0, 1], [5, 6, 7]
    fig = T.style_mix(gen, rows, cols)
    groups = {"stylegan2": {"coarse": range(3), "middle": range(3, 6)},
              "stylegan": {"coarse": range(4), "middle": range(4, 6)}}[gen.cfg.model]
    assert fig.meta["groups"] == {k: [r.start, r.stop] for k, r in groups.items()}  # 16px: no fine styles
    assert fig.tiles.shape == (1 + len(groups) * len(rows), 1 + len(cols), gen.channels, 16, 16)
    assert torch.equal(fig.tiles[0, 0], torch.ones_like(fig.tiles[0, 0]))  # the blank corner
    for j, s in enumerate(cols):
        assert torch.equal(fig.tiles[0, 1 + j], gen.sample(1, seed=s)[0])
    for b in range(len(groups)):
        for i, s in enumerate(rows):
            assert torch.equal(fig.tiles[1 + b * len(rows) + i, 0], gen.sample(1, seed=s)[0])
    # each cell against the model's own crossover: coarse = the column's w with the styles after the group from
    # the row; middle (the last group here) = the row's w with the styles from the group on from the column
    G = gen.net
    coarse, middle = groups["coarse"], groups["middle"]
    for i, rs in enumerate(rows):
        row_in = gen.inputs(1, seed=rs)
        for j, cs in enumerate(cols):
            zr, zc = row_in["z"].to(gen.device), gen.latents(1, seed=cs).to(gen.device)
            with torch.no_grad():
                want_coarse = gen.synthesize(G.ws(zc, zr, mix_cutoff=coarse.stop), row_in["noise"])
                want_middle = gen.synthesize(G.ws(zr, zc, mix_cutoff=middle.start), row_in["noise"])
            torch.testing.assert_close(fig.tiles[1 + i, 1 + j], want_coarse[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(fig.tiles[1 + len(rows) + i, 1 + j], want_middle[0], atol=1e-4, rtol=0)
    assert not torch.allclose(fig.tiles[1, 1], fig.tiles[1, 2], atol=1e-3)  # the column source matters


def test_mix_grid_of_a_64px_model_has_three_bands(runs):
    g = ganforge.load(runs.stylegan2_64)
    fig = T.style_mix(g, [0, 1], [2, 3, 4], truncation=0.7)
    assert list(fig.meta["groups"]) == ["coarse", "middle", "fine"]
    assert fig.tiles.shape == (1 + 3 * 2, 4, 1, 64, 64)
    assert torch.equal(fig.tiles[0, 1], g.sample(1, seed=2, truncation=0.7)[0])
    out = fig.save(runs.tmp / "mix64.png")
    with Image.open(out) as im:  # 4 x 7 tiles of 64px with 2px padding, scaled by a whole factor
        assert im.width * (7 * 66 + 2) == im.height * (4 * 66 + 2)


# ------------------------------------------------------------------------------------------ noise

def test_no_noise_is_deterministic_and_noise_draws_vary_one_w(gen):
    ws = gen.ws(gen.inputs(1, seed=2)).expand(3, -1, -1)
    plain = gen.synthesize(ws, None)
    assert torch.equal(plain[0], plain[1]) and torch.equal(plain, gen.synthesize(ws, None))
    fig = T.stochastic_variation(gen, seed=2, n=4, std_draws=16)
    assert fig.tiles.shape == (1, 5, gen.channels, 16, 16)
    tiles = fig.tiles[0]
    torch.testing.assert_close(tiles[0], gen.sample(1, seed=2)[0], atol=1e-4, rtol=0)  # the seed's own sample
    assert not torch.equal(tiles[0], tiles[1]) and not torch.equal(tiles[1], tiles[2])  # the noise differs
    std = fig.meta["std"]
    assert std.shape == (16, 16) and fig.meta["max_std"] > 0 and float(std.max()) == fig.meta["max_std"]
    assert tiles[-1].max() == 1.0 and tiles[-1].min() >= -1  # the std map: its most variable pixel white
    assert fig.meta["max_std"] <= 1  # in units of the [-1, 1] range
    with noise_off(gen):
        still = T.stochastic_variation(gen, seed=2, n=4, std_draws=16)
        assert still.meta["max_std"] == 0 and torch.equal(still.tiles[0, 0], still.tiles[0, 3])
        assert torch.equal(still.tiles[0, -1], -torch.ones_like(still.tiles[0, -1]))  # black: no variation


# ------------------------------------------------------------------------------------------ interpolation in W

def test_w_interpolation_passes_through_the_seeds_images(gen):
    seeds, ends_at = [3, 5, 9], (0, 4, 8)  # 5 steps per segment: t = 0, 1/4, 1/2, 3/4, 1
    ws = interpolation_ws(gen, seeds, steps=5)
    ends = [gen.ws(gen.inputs(1, seed=s))[0] for s in seeds]
    assert ws.shape == (9, gen.net.num_ws, gen.net.w_dim)
    for i, e in zip(ends_at, ends):
        torch.testing.assert_close(ws[i], e, atol=1e-6, rtol=0)
    torch.testing.assert_close(ws[2], (ends[0] + ends[1]) / 2, atol=1e-4, rtol=0)  # a straight line in W

    images = interpolate(gen, seeds, steps=5, noise=False)  # W is the default space of a mapping model
    for i, e in zip(ends_at, ends):
        torch.testing.assert_close(images[i], gen.synthesize(e[None], None)[0], atol=1e-4, rtol=0)
    noisy = interpolate(gen, seeds, steps=5, space="w")  # every frame under the first seed's noise
    torch.testing.assert_close(noisy[0], gen.sample(1, seed=3)[0], atol=1e-4, rtol=0)
    first_noise = gen.inputs(1, seed=3)["noise"]
    torch.testing.assert_close(noisy[8], gen.synthesize(ends[2][None], first_noise)[0], atol=1e-4, rtol=0)
    in_z = interpolate(gen, seeds, steps=5, space="z", noise=False)  # the same ends, another path between
    torch.testing.assert_close(in_z[4], images[4], atol=1e-4, rtol=0)
    assert not torch.allclose(in_z[2], images[2], atol=1e-4)


# ------------------------------------------------------------------------------------------ projection

def test_projection_lowers_its_loss_on_a_training_image_and_writes_its_files(gen, runs, tmp_path):
    target = T.read_target(gen, runs.image)
    assert target.shape == (1, 1, 16, 16)
    assert torch.equal(target, runs.data.images[:1].float() * (2 / 255) - 1)  # as the data loader reads it
    proj = T.project(gen, target, steps=80)
    assert proj.loss_kind == "fashion-mnist-classifier features + pixel MSE"
    assert len(proj.losses) == 80 and proj.ws.shape == (1, gen.net.num_ws, gen.net.w_dim)
    assert proj.final_loss < 0.8 * proj.initial_loss, (proj.initial_loss, proj.final_loss)
    assert torch.equal(proj.ws[:, 0], proj.ws[:, -1])  # one w for every layer
    paths = T.save_projection(gen, proj, tmp_path / "proj", image_path=runs.image)
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == sorted(T.PROJECTION_FILES)
    with Image.open(paths["reconstruction"]) as im:  # target | reconstruction
        assert im.width * 20 == im.height * 38
    with Image.open(paths["progress"]) as im:
        assert im.format == "GIF" and im.n_frames >= 2
    ws, noise, meta = T.read_latent(paths["latent"])
    assert torch.equal(ws, proj.ws) and meta["model"] == gen.cfg.model and meta["steps"] == 80
    torch.testing.assert_close(gen.synthesize(ws, noise), proj.image, atol=1e-4, rtol=0)
    with pytest.raises(GanforgeError, match="not empty.*--force"):
        T.save_projection(gen, proj, tmp_path / "proj")
    (tmp_path / "proj" / "mine.txt").write_text("keep me")
    T.save_projection(gen, proj, tmp_path / "proj", force=True)
    assert (tmp_path / "proj" / "mine.txt").read_text() == "keep me"  # --force replaces only its own files


def test_projection_loss_uses_the_domain_classifier_where_the_data_has_one(gen, monkeypatch):
    target = torch.zeros(1, 1, 16, 16)
    x = torch.rand(1, 1, 16, 16)
    full = T.ProjectionLoss(gen, target)  # a Fashion-MNIST run: its shipped classifier, 1 channel
    assert full.net is not None and full.net.channels == 1
    assert float(full(target)) == 0 and float(full(x)) > float(torch.nn.functional.mse_loss(x, target)) + 1e-3
    monkeypatch.setattr(gen.cfg.data, "name", "/some/folder")
    loss = T.ProjectionLoss(gen, target)
    assert loss.net is None and loss.kind.startswith("pixel MSE")
    assert torch.equal(loss(x), torch.nn.functional.mse_loss(x, target))


def test_read_target_frames_any_image_like_the_data(runs, tmp_path):
    from ganforge.data.sources import read_idx

    g = ganforge.load(runs.stylegan2)
    raw = read_idx(next((runs.cache / "fashion-mnist").glob("train-images*")))[3]   # 28x28, as in the dataset
    Image.fromarray(raw).save(tmp_path / "raw.png")
    expected = runs.data.images[3:4].float() * (2 / 255) - 1                       # padded to 32, resized to 16
    assert torch.equal(T.read_target(g, tmp_path / "raw.png"), expected)
    Image.new("RGBA", (50, 30), (200, 10, 10, 128)).save(tmp_path / "wide.png")
    assert T.read_target(g, tmp_path / "wide.png").shape == (1, 1, 16, 16)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(GanforgeError, match="not a readable image"):
        T.read_target(g, tmp_path / "bad.png")
    with pytest.raises(GanforgeError, match="no such file"):
        T.read_target(g, tmp_path / "missing.png")


# ------------------------------------------------------------------------------------------ no mapping network

def test_every_tool_on_a_model_without_mapping_is_one_clear_error(runs):
    g = ganforge.load(runs.dcgan)
    assert not g.has_mapping
    calls = [lambda: T.truncation_strip(g, [0]), lambda: T.style_mix(g, [0], [1]),
             lambda: T.stochastic_variation(g), lambda: T.project(g, torch.zeros(1, 1, 16, 16)),
             lambda: interpolation_ws(g, [0, 1], 3), lambda: interpolate(g, [0, 1], 3, space="w"),
             lambda: g.ws(g.latents(1))]
    for call in calls:
        with pytest.raises(GanforgeError) as e:
            call()
        assert MAPPING_ERROR in str(e.value) and str(e.value).endswith("is a dcgan"), str(e.value)
    assert interpolate(g, [0, 1], 3).shape == (3, 1, 16, 16)  # in z, as ever
    with pytest.raises(GanforgeError, match="BigGAN's threshold"):
        g.sample(2, truncation=0)


def test_v1_without_noise_inputs_gets_every_tool_but_variation_which_says_why(runs):
    g = ganforge.load(runs.stylegan_quiet)
    g.net.set_growth(16)
    assert g.has_mapping and not g.capabilities["noise"]
    with pytest.raises(GanforgeError, match="needs a model with noise inputs"):
        T.stochastic_variation(g)
    assert T.truncation_strip(g, [0, 1]).tiles.shape[:2] == (2, 5)
    assert torch.isfinite(T.style_mix(g, [0], [1]).tiles).all()
    assert interpolate(g, [0, 1], 3, space="w").shape == (3, 1, 16, 16)
    result = T.project(g, g.sample(1, seed=2), steps=3)
    assert result.noise == [] and torch.isfinite(result.image).all()


# ------------------------------------------------------------------------------------------ the CLI



def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("model", STYLE_MODELS)
def test_cli_verbs_write_their_pictures(model, runs, tmp_path, capsys, monkeypatch):
    for k, v in runs.env.items():
        monkeypatch.setenv(k, v)
    run = str(getattr(runs, model))
    ok = {
        "mix": ["mix", run, "--out", str(tmp_path / "mix.png"), "--row-seeds", "0,1", "--col-seeds", "2,3,4",
                "--truncation", "0.7"],
        "variation": ["variation", run, "--out", str(tmp_path / "var.png"), "--n", "3", "--draws", "8"],
        "truncation": ["truncation", run, "--out", str(tmp_path / "strip.png"), "--seeds", "0,1",
                       "--psis", "1,0.5,0"],
        "interpolate": ["interpolate", run, "--out", str(tmp_path / "walk.png"), "--seeds", "0,1", "--steps", "3"],
        "interpolate-z": ["interpolate", run, "--out", str(tmp_path / "walk.gif"), "--space", "z", "--seeds", "0,1",
                          "--steps", "3"],
        "sample-psi0": ["sample", run, "--n", "3", "--truncation", "0", "--format", "npz",
                        "--out", str(tmp_path / "s.npz")],
        "project": ["project", run, "--image", str(runs.image), "--out", str(tmp_path / "proj"), "--steps", "20"],
    }
    for name, argv in ok.items():
        proc = run_main(argv, capsys)
        assert proc.returncode == 0 and not proc.stderr, (name, proc.stdout, proc.stderr)
    # tiles of 16px and 2px padding, scaled by a whole factor: columns x rows
    for name, (cols, rows) in {"mix": (4, 5), "var": (4, 1), "strip": (3, 2), "walk": (3, 1)}.items():
        w, h = png_size(tmp_path / f"{name}.png")
        assert w * (rows * 18 + 2) == h * (cols * 18 + 2), name
    assert "rows 2-3: seeds 0,1 with the coarse" in run_main(ok["mix"] + ["--force"], capsys).stdout
    with np.load(tmp_path / "s.npz") as f:  # psi 0: every seed the average image, but for the noise
        assert f["images"].shape == (3, 16, 16, 1)
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == sorted(T.PROJECTION_FILES)
    # nothing a user made is lost
    before = (tmp_path / "proj" / "latent.safetensors").read_bytes()
    assert_one_line_error(run_main(ok["project"], capsys), "not empty", "--force")
    assert (tmp_path / "proj" / "latent.safetensors").read_bytes() == before
    assert_one_line_error(run_main(ok["mix"], capsys), "mix.png", "--force")
    assert_one_line_error(run_main(["project", run, "--image", str(tmp_path / "nope.png"), "--out",
                                    str(tmp_path / "p2")], capsys), "nope.png", "no such file")
    assert not (tmp_path / "p2").exists()
    assert_one_line_error(run_main(["mix", run, "--out", str(tmp_path / "m.jpg")], capsys), ".png")


def test_cli_tools_on_a_dcgan_run_are_one_line_errors(runs, tmp_path, capsys, monkeypatch):
    for k, v in runs.env.items():
        monkeypatch.setenv(k, v)
    run = str(runs.dcgan)
    for argv in (["mix", run, "--out", str(tmp_path / "m.png")],
                 ["variation", run, "--out", str(tmp_path / "v.png")],
                 ["truncation", run, "--out", str(tmp_path / "t.png")],
                 ["interpolate", run, "--space", "w", "--out", str(tmp_path / "i.gif")],
                 ["project", run, "--image", str(runs.image), "--out", str(tmp_path / "p")]):
        assert_one_line_error(run_main(argv, capsys), MAPPING_ERROR, f"{run} is a dcgan")
    assert not list(tmp_path.iterdir())
    # and the real command, once
    assert_one_line_error(run_cli("mix", run, "--out", str(tmp_path / "m.png"), env=runs.env), MAPPING_ERROR)
    assert not list(tmp_path.iterdir())
