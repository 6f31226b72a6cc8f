"""`ganforge attention` (ganforge.attention_tools): SAGAN's attention maps and figure, on tiny SAGANs built directly
(no training: the maps of any network are softmax rows) and, for the CLI verb, on a 2-step tiny run."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, run_main
from PIL import Image

from ganforge import attention_tools as A
from ganforge import config as C
from ganforge.recipes import RECIPES
from ganforge.registry import GanforgeError, get_model
from ganforge.sampling import Generator

R = 16  # every model here makes 16x16 grey images


def tiny(model: str, **arch) -> Generator:
    """A freshly built tiny model wrapped for sampling, as `ganforge.load` wraps a trained one."""
    cfg = C.resolve(model, [{"data": {"resolution": R}, "arch": arch}])
    spec = get_model(model)
    torch.manual_seed(0)
    G, _ = spec.build(cfg.arch, R, 1)
    G.eval().requires_grad_(False)
    return Generator(G, RECIPES[spec.recipe](G, None, cfg), cfg, 1, Path(f"tiny-{model}"), 0)


@pytest.fixture(scope="module")
def gen() -> Generator:
    """The default placement ("auto": attention at R/2 = 8px), unconditional."""
    return tiny("sagan", ch=4, z_dim=16, num_classes=0)


@pytest.fixture(scope="module")
def pooled() -> Generator:
    """Attention at 8 and 16px with the authors' pooled keys, a nonzero gamma so the attention changes the
    image, and three classes that change it."""
    g = tiny("sagan", ch=4, z_dim=16, num_classes=3, attn_resolutions="8,16", attn_pool=True)
    for m in g.net.attention.values():
        m.gamma.fill_(0.7)
    for m in g.net.modules():  # per-class gains and biases that differ (freshly built, all classes are alike)
        if isinstance(m, torch.nn.Embedding):
            m.weight.normal_(0.5, 0.5, generator=torch.Generator().manual_seed(1))
    return g


def all_off(g: Generator) -> bool:
    return all(not m.keep_attention and m.attention is None for m in g.net.attention.values())


# ------------------------------------------------------------------------------------------ the maps

def test_maps_are_softmax_rows_over_the_key_grid(gen):
    images, maps, res = A.attention_maps(gen, [0, 1, 2])
    assert res == 8 and images.shape == (3, 1, R, R) and maps.shape == (3, 64, 8, 8)
    assert images.min() >= -1 and images.max() <= 1
    assert torch.allclose(maps.sum(dim=(2, 3)), torch.ones(3, 64), atol=1e-5)
    assert (maps >= 0).all()
    # the seeds' own samples, whatever other seeds come along
    assert torch.allclose(images, gen.generate(gen.inputs_for_seeds([0, 1, 2])), atol=1e-5)
    assert torch.allclose(A.attention_maps(gen, [1])[1][0], maps[1], atol=1e-6)
    assert all_off(gen)


def test_maps_are_the_layers_softmax_of_queries_against_pooled_keys(pooled):
    """Row j of the maps is query position j (y * w + x) of the layer; keys max-pooled 2x2 with attn_pool."""
    seen = {}
    layer = pooled.net.attention["16"]
    hook = layer.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))  # (returns None: no change)
    try:
        images, maps, res = A.attention_maps(pooled, [3, 4])  # default: the highest resolution
    finally:
        hook.remove()
    assert res == 16 and maps.shape == (2, 256, 8, 8)
    x = seen["x"]
    q = layer.query(x).flatten(2).transpose(1, 2)                           # [N, 256, d]
    k = F.max_pool2d(layer.key(x), 2).flatten(2)                            # [N, d, 64]
    want = torch.softmax(q @ k, dim=-1).reshape(2, 256, 8, 8)
    assert torch.allclose(maps, want, atol=1e-5)
    # with gamma != 0 the attention shapes the image: the explicit path gives the fused path's images
    assert torch.allclose(images, pooled.generate(pooled.inputs_for_seeds([3, 4])), atol=1e-4)
    assert all_off(pooled)


def test_layer_choice_and_labels(pooled):
    _, maps8, res = A.attention_maps(pooled, [0, 1], layer="8")
    assert res == 8 and maps8.shape == (2, 64, 4, 4)
    assert A.attention_maps(pooled, [0], layer=8)[2] == 8
    with pytest.raises(GanforgeError, match=r"no attention layer at 32.*attends at 8, 16"):
        A.attention_maps(pooled, [0], layer=32)
    # a class for every seed (conditional BN changes the image), by index or name; unknown ones are errors
    a, _, _ = A.attention_maps(pooled, [0, 1], labels=0)
    b, _, _ = A.attention_maps(pooled, [0, 1], labels="2")
    assert not torch.allclose(a, b)
    with pytest.raises(GanforgeError, match="out of range"):
        A.attention_maps(pooled, [0], labels=7)
    with pytest.raises(GanforgeError, match="at least one seed"):
        A.attention_maps(pooled, [])
    assert all_off(pooled)


def test_keep_attention_is_switched_off_even_when_the_generator_fails():
    def boom(*_):
        raise RuntimeError("boom")

    gen = tiny("sagan", ch=4, z_dim=16, num_classes=0)  # its own: training mode moves batch-norm statistics
    gen.net.train()
    hook = gen.net.to_rgb.register_forward_pre_hook(boom)  # after the attention layer has run
    try:
        with pytest.raises(RuntimeError, match="boom"):
            A.attention_maps(gen, [0])
    finally:
        hook.remove()
    assert all_off(gen)
    assert gen.net.training  # the mode it was in comes back too
    gen.net.eval()
    assert A.attention_maps(gen, [0])[1].shape == (1, 64, 8, 8) and all_off(gen)


def test_models_without_attention_are_one_clear_error(tmp_path):
    for g in (tiny("dcgan", base_channels=4, z_dim=16), tiny("sagan", ch=4, z_dim=16, num_classes=0,
                                                            attn_resolutions="")):
        for call in (lambda g=g: A.attention_maps(g, [0]), lambda g=g: A.attention_figure(g, [0]),
                     lambda g=g: A.save_attention_figure(g, [0], tmp_path / "a.png")):
            with pytest.raises(GanforgeError) as e:
                call()
            msg = str(e.value)
            assert "needs a model with self-attention (sagan)" in msg and f"is a {g.cfg.model}" in msg, msg
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("points", [[(1.0, 0.5)], [(0.5, -0.1)], [(float("nan"), 0.5)], [(0.5,)], [("a", 0.1)],
                                    [], [(0.2, 0.2, 0.2)]])
def test_bad_points_are_errors(gen, points):
    with pytest.raises(GanforgeError, match="point"):
        A.attention_figure(gen, [0], points=points)


def test_query_cells_on_the_layer_grid():
    assert A.query_cells([(0.0, 0.0), (0.5, 0.5), (0.99, 0.3), (0.124, 0.126)], 8, 8) == [
        (0, 0), (4, 4), (7, 2), (0, 1)]
    assert np.allclose(A.heat_colours(np.array([0.0, 1 / 3, 2 / 3, 1.0])),
                       [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])


# ------------------------------------------------------------------------------------------ the figure

def panel(fig: Image.Image, row: int, col: int, size: int) -> np.ndarray:
    top, left = A.PAD + row * (size + A.PAD), A.PAD + col * (size + A.PAD)
    return np.asarray(fig)[top: top + size, left: left + size]


def test_figure_layout_markers_and_maps(gen):
    points = [(0.5, 0.5), (0.1, 0.8)]
    fig = A.attention_figure(gen, [0, 1], points=points)
    size = 128  # 16px images, drawn 8x
    assert fig.mode == "RGB" and fig.size == (3 * size + 4 * A.PAD, 2 * size + 3 * A.PAD)
    assert A.attention_figure(gen, [5], size=40).size == (4 * 40 + 5 * A.PAD, 40 + 2 * A.PAD)  # default: 3 points

    _, maps, _ = A.attention_maps(gen, [0, 1])
    for row in range(2):
        image = panel(fig, row, 0, size)
        for i, (cy, cx) in enumerate(A.query_cells(points, 8, 8)):
            centre = (int((cy + 0.5) * size / 8), int((cx + 0.5) * size / 8))
            colour = A.MARKER_COLOURS[i]
            assert tuple(image[centre]) == colour                  # every point on the image
            heat = panel(fig, row, 1 + i, size)
            assert tuple(heat[centre]) == colour                   # its own point on its map
            # the brightest cell of the map is drawn (nearly) white: the map is the point's own row
            ky, kx = divmod(int(maps[row, cy * 8 + cx].flatten().argmax()), 8)
            at = (int((ky + 0.5) * size / 8), int((kx + 0.5) * size / 8))
            if math.dist(at, centre) > size / 28 + 3:
                assert heat[at].min() > 220, heat[at]
        assert (panel(fig, row, 1, size) != panel(fig, row, 2, size)).any()


def test_save_refuses_to_overwrite_without_force(gen, tmp_path):
    out = tmp_path / "sub" / "attn.png"
    assert A.save_attention_figure(gen, [0], out, points=[(0.5, 0.5)], size=16) == out
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (2 * 16 + 3 * A.PAD, 16 + 2 * A.PAD)
    before = out.read_bytes()
    with pytest.raises(GanforgeError, match="exists.*--force"):
        A.save_attention_figure(gen, [1], out)
    assert out.read_bytes() == before
    A.save_attention_figure(gen, [1], out, force=True)
    assert out.read_bytes() != before
    assert sorted(p.name for p in out.parent.iterdir()) == ["attn.png"]  # no temporary file left


# ------------------------------------------------------------------------------------------ the CLI



def test_cli_attention_verb(fake_fashion, tmp_path, capsys):
    runs = {}
    for model, sets in (("sagan", ["arch.ch=4", "arch.z_dim=16", "arch.num_classes=0"]),
                        ("dcgan", ["arch.base_channels=4", "arch.z_dim=16"])):
        runs[model] = str(tmp_path / model)
        proc = run_main(["train", model, "--data", "fashion-mnist", "--resolution", "16", "--steps", "1",
                         "--batch-size", "8", "--sample-every", "0", "--quiet", "--out", runs[model],
                         *[a for s in sets for a in ("--set", s)]], capsys)
        assert proc.returncode == 0, proc.stderr
    run, out = runs["sagan"], tmp_path / "attn.png"
    argv = ["attention", run, "--out", str(out), "--seeds", "0,1", "--points", "0.25,0.25;0.5,0.5"]
    proc = run_main(argv, capsys)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert str(out) in proc.stdout and "8x8" in proc.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (3 * 128 + 4 * A.PAD, 2 * 128 + 3 * A.PAD)
    before = out.read_bytes()
    assert_one_line_error(run_main(argv, capsys), "attn.png", "--force")
    assert out.read_bytes() == before
    assert run_main(argv + ["--force", "--seeds", "2"], capsys).returncode == 0
    with Image.open(out) as im:
        assert im.size == (3 * 128 + 4 * A.PAD, 128 + 2 * A.PAD)

    new = str(tmp_path / "new.png")
    assert_one_line_error(run_main(["attention", run, "--out", new, "--points", "1.5,0.2"], capsys),
                          "outside the image")
    assert_one_line_error(run_main(["attention", run, "--out", new, "--points", "0.5"], capsys), "Y,X")
    assert_one_line_error(run_main(["attention", run, "--out", new, "--layer", "4"], capsys), "attends at 8")
    assert_one_line_error(run_main(["attention", run, "--out", new, "--class", "1"], capsys), "unconditional")
    assert_one_line_error(run_main(["attention", run, "--out", str(tmp_path / "a.jpg")], capsys), ".png")
    assert_one_line_error(run_main(["attention", runs["dcgan"], "--out", new], capsys),
                          "self-attention (sagan)", "is a dcgan")
    assert not (tmp_path / "new.png").exists() and not (tmp_path / "a.jpg").exists()
    helped = run_main(["attention", "--help"], capsys)
    assert helped.returncode == 0 and "--points" in helped.stdout and "--layer" in helped.stdout
