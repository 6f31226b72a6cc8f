"""Paired data for image-to-image translation (pix2pix): folders of side-by-side A|B images or of A/ and B/
subfolders, their train/val/test splits, the direction of translation, the errors that name a bad file, and
the named paired datasets edges2fashion (Fashion-MNIST -> its Canny edges) and gray2emoji (emoji luma ->
colour).

Every picture is tiny and made here with Pillow, in colours that show a swapped or mixed-up half at once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_idx
from ganforge.data import paired
from ganforge.data.sources import RENDERED, data_status, load_data, prepare
from ganforge.registry import GanforgeError

PAIRS = {"image", "source"}
RED, BLUE, GREEN, YELLOW = (255, 0, 0), (0, 0, 255), (0, 200, 0), (255, 255, 0)


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _flat(colour, h=8, w=8) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def _side_by_side(path: Path, a=RED, b=BLUE, h=8) -> Path:
    return _png(path, np.concatenate([_flat(a, h, h), _flat(b, h, h)], axis=1))


def _colour(t: torch.Tensor) -> tuple[int, ...]:
    """The colour of a uniform image [3, R, R] (asserting it is uniform)."""
    flat = t.reshape(3, -1)
    assert torch.equal(flat.min(1).values, flat.max(1).values), "expected a uniform image"
    return tuple(flat[:, 0].tolist())


# ---------------------------------------------------------------------------------------------- folders

@pytest.mark.parametrize("stream", ["never", "always"])
def test_side_by_side_left_half_is_the_source_right_half_the_image(tmp_path, stream):
    _side_by_side(tmp_path / "p" / "0.png", RED, BLUE)
    data = load_data(str(tmp_path / "p"), 8, needs=PAIRS, stream=stream)
    assert data.provides == PAIRS and len(data) == 1
    got = data.take(torch.tensor([0]))
    assert _colour(got["source"][0]) == RED, "source must be the left half (A)"
    assert _colour(got["image"][0]) == BLUE, "image must be the right half (B)"


@pytest.mark.parametrize("stream", ["never", "always"])
def test_direction_BtoA_swaps_source_and_image(tmp_path, stream):
    _side_by_side(tmp_path / "sbs" / "0.png", RED, BLUE)
    _png(tmp_path / "ab" / "A" / "x.png", _flat(GREEN))
    _png(tmp_path / "ab" / "B" / "x.png", _flat(YELLOW))
    for folder, a, b in (("sbs", RED, BLUE), ("ab", GREEN, YELLOW)):
        forward = load_data(str(tmp_path / folder), 8, needs=PAIRS, stream=stream, direction="AtoB")
        back = load_data(str(tmp_path / folder), 8, needs=PAIRS, stream=stream, direction="BtoA")
        f, r = forward.take(torch.tensor([0])), back.take(torch.tensor([0]))
        assert (_colour(f["source"][0]), _colour(f["image"][0])) == (a, b)
        assert (_colour(r["source"][0]), _colour(r["image"][0])) == (b, a), folder
        assert back.take(torch.tensor([0]), 4)["source"].shape == (1, 3, 4, 4)  # other resolutions too


def test_an_unknown_direction_is_an_error_naming_the_allowed_values(tmp_path):
    _side_by_side(tmp_path / "p" / "0.png")
    with pytest.raises(GanforgeError, match=r"AtoB, BtoA.*'AB'"):
        load_data(str(tmp_path / "p"), 8, needs=PAIRS, direction="AB")


def test_A_and_B_folders_pair_files_by_name_whatever_the_extension(tmp_path):
    values = {"x": 10, "y": 200, "sub/z": 90}
    for name, v in values.items():
        _png(tmp_path / "p" / "A" / f"{name}.png", np.full((8, 8), v, np.uint8))
        _png(tmp_path / "p" / "B" / f"{name}.{'bmp' if name == 'y' else 'png'}", np.full((8, 8), 255 - v, np.uint8))
    data = load_data(str(tmp_path / "p"), 8, needs=PAIRS)
    assert len(data) == 3 and data.labels is None
    src, img = data.at(8, "source")[:, 0, 0, 0], data.at(8, "image")[:, 0, 0, 0]
    assert (src + img).tolist() == [255, 255, 255], "each A must meet the B of its own name"
    assert sorted(src.tolist()) == sorted(values.values())


# ---------------------------------------------------------------------------------------------- errors

def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.parametrize("lone", ["A", "B"])
def test_a_file_without_a_partner_is_an_error_naming_it(tmp_path, lone):
    for side in "AB":
        _png(tmp_path / "p" / side / "both.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "p" / lone / "lonely.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(GanforgeError) as e:
        load_data(str(tmp_path / "p"), 8, needs=PAIRS)
    _one_line_error(e, str(tmp_path / "p" / lone / "lonely.png"), "no partner")


def test_a_pair_of_different_sizes_is_an_error_naming_both_files_and_sizes(tmp_path):
    a = _png(tmp_path / "p" / "A" / "x.png", np.zeros((8, 8), np.uint8))
    b = _png(tmp_path / "p" / "B" / "x.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(GanforgeError) as e:
        load_data(str(tmp_path / "p"), 8, needs=PAIRS)
    _one_line_error(e, str(a), "8x8", str(b), "10x8")


def test_a_side_by_side_image_of_odd_width_is_an_error_naming_it(tmp_path):
    _side_by_side(tmp_path / "p" / "fine.png")
    odd = _png(tmp_path / "p" / "odd.png", np.zeros((8, 17, 3), np.uint8))
    with pytest.raises(GanforgeError) as e:
        load_data(str(tmp_path / "p"), 8, needs=PAIRS)
    _one_line_error(e, str(odd), "17x8", "width is odd")


def test_a_side_by_side_image_not_twice_as_wide_as_high_is_an_error_naming_it(tmp_path):
    _side_by_side(tmp_path / "p" / "fine.png")
    square = _png(tmp_path / "p" / "square.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(GanforgeError) as e:
        load_data(str(tmp_path / "p"), 8, needs=PAIRS)
    _one_line_error(e, str(square), "8x8", "width twice the height")


def test_the_errors_come_from_headers_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    from ganforge.data import sources

    _png(tmp_path / "p" / "A" / "x.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "p" / "B" / "x.png", np.zeros((8, 10), np.uint8))
    monkeypatch.setattr(sources, "read_image", lambda *a, **k: pytest.fail("decoded before the check"))
    with pytest.raises(GanforgeError, match="same size"):
        sources.index_folder(tmp_path / "p", paired=True)


# ---------------------------------------------------------------------------------------------- splits

def test_train_and_test_subfolders_are_the_splits_and_not_classes(tmp_path):
    root = tmp_path / "facades"
    for i in range(3):
        _side_by_side(root / "train" / f"{i}.png", RED, BLUE)
    _side_by_side(root / "val" / "v.png", GREEN, YELLOW)
    train = load_data(str(root), 8, "train", needs=PAIRS)
    assert len(train) == 3 and train.labels is None and train.classes == () and "label" not in train.provides
    test = load_data(str(root), 8, "test", needs=PAIRS)  # no test/: val/ stands in, as in pix2pix's facades
    assert len(test) == 1 and _colour(test.at(8, "source")[0]) == GREEN
    _side_by_side(root / "test" / "t.png", YELLOW, RED)  # a test/ is preferred over val/
    assert _colour(load_data(str(root), 8, "test", needs=PAIRS).at(8, "source")[0]) == YELLOW


def test_a_missing_split_is_an_error_naming_the_folder_and_its_subfolders(tmp_path):
    root = tmp_path / "only-train"
    _side_by_side(root / "train" / "0.png")
    (root / "extra").mkdir()
    with pytest.raises(GanforgeError) as e:
        load_data(str(root), 8, "test", needs=PAIRS)
    _one_line_error(e, str(root), "test/ or val/", "train/", "extra/")


@pytest.mark.parametrize("layout", ["A/train", "train/A"])
def test_A_and_B_folders_with_splits_inside(tmp_path, layout):
    root = tmp_path / "p"
    for split, v in (("train", 10), ("test", 100)):
        for side, value in (("A", v), ("B", 255 - v)):
            sub = f"{side}/{split}" if layout == "A/train" else f"{split}/{side}"
            for name in ("x", "y"):
                _png(root / sub / f"{name}.png", np.full((8, 8), value, np.uint8))
    for split, v in (("train", 10), ("test", 100)):
        data = load_data(str(root), 8, split, needs=PAIRS)
        assert len(data) == 2 and data.labels is None
        assert data.at(8, "source")[:, 0, 0, 0].tolist() == [v, v]
        assert data.at(8, "image")[:, 0, 0, 0].tolist() == [255 - v, 255 - v]
    if layout == "A/train":
        with pytest.raises(GanforgeError, match=r"has no val/ subfolder.*train/"):
            load_data(str(root), 8, "val", needs=PAIRS)


def test_a_flat_paired_folder_serves_the_same_files_for_train_and_test(tmp_path):
    _side_by_side(tmp_path / "flat" / "a" / "0.png", RED, BLUE)   # subfolders of a paired folder: no classes
    _side_by_side(tmp_path / "flat" / "b" / "1.png", GREEN, YELLOW)
    train = load_data(str(tmp_path / "flat"), 8, "train", needs=PAIRS)
    test = load_data(str(tmp_path / "flat"), 8, "test", needs=PAIRS)
    assert torch.equal(train.at(8, "image"), test.at(8, "image")) and len(train) == 2
    assert train.labels is None and train.classes == ()


# ---------------------------------------------------------------------------------------------- edges2fashion

def test_edge_map_draws_the_boundary_black_on_white():
    img = np.zeros((2, 1, 32, 32), np.uint8)
    img[0, 0, 8:24, 8:24] = 255                    # a bright square on black
    edges = paired.edge_map(img)
    assert edges.shape == img.shape and edges.dtype == np.uint8
    assert set(np.unique(edges)) <= {0, 255}
    e = edges[0, 0]
    ring = np.zeros((32, 32), bool)
    ring[7:25, 7:25] = True
    ring[9:23, 9:23] = False                       # within a pixel of the square's border
    assert (e[~ring] == 255).all(), "flat areas (inside, outside) are white"
    for side in (e[7:9, 10:22], e[23:25, 10:22], e[10:22, 7:9], e[10:22, 23:25]):
        assert (side == 0).any(axis=0 if side.shape[0] == 2 else 1).all(), "every side of the square is an edge"
    assert (edges[1] == 255).all(), "a flat image has no edges"
    as_tensor = paired.edge_map(torch.from_numpy(img))
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), edges)
    with pytest.raises(GanforgeError, match="uint8 grey"):
        paired.edge_map(img.astype(np.float32))


@pytest.fixture
def fake_fashion_both(isolated_data) -> Path:
    folder = write_idx(isolated_data / "fashion-mnist", n=40, split="train")
    write_idx(folder, n=12, split="test", seed=1)
    return folder


def test_edges2fashion_pairs_the_edges_with_the_item(fake_fashion_both):
    data = load_data("edges2fashion", 32, needs=PAIRS)
    assert data.name == "edges2fashion" and len(data) == 40 and data.channels == 1
    assert data.provides == {"image", "source", "label"} and len(data.classes) == 10
    item = load_data("fashion-mnist", 32)
    assert torch.equal(data.images, item.images) and torch.equal(data.labels, item.labels)
    assert np.array_equal(data.at(32, "source").numpy(), paired.edge_map(item.images.numpy()))
    assert len(load_data("edges2fashion", 32, "test")) == 12  # also without "source" asked: both fields
    assert load_data("edges2fashion", 32, "test").provides == {"image", "source", "label"}
    small = load_data("edges2fashion", 16, channels=3, direction="BtoA")
    assert small.fields["image"].shape == (40, 3, 16, 16)
    assert torch.equal(small.fields["image"][:, :1], data.at(16, "source")), "BtoA: the edges become the target"
    assert torch.equal(small.fields["image"][:, 0], small.fields["image"][:, 2])
    with pytest.raises(GanforgeError, match="splits train, test"):
        load_data("edges2fashion", 32, "val")


def test_edges2fashion_edges_are_cached_once_per_split(fake_fashion_both, isolated_data, monkeypatch):
    calls = []
    real = paired.edge_map
    monkeypatch.setattr(paired, "edge_map", lambda x: calls.append(len(x)) or real(x))
    first = load_data("edges2fashion", 32)
    assert calls == [40]
    assert sorted(p.name for p in (isolated_data / "edges2fashion").iterdir()) == ["train.npz"]  # no partial file
    monkeypatch.setattr(paired, "edge_map", lambda x: pytest.fail("recomputed despite the cache"))
    again = load_data("edges2fashion", 32)
    assert torch.equal(first.at(32, "source"), again.at(32, "source"))
    # a change of recipe, or a broken cache file, makes it again
    monkeypatch.setattr(paired, "edge_map", lambda x: calls.append(len(x)) or real(x))
    monkeypatch.setitem(paired.EDGES_RECIPE, "sigma", 2.0)
    load_data("edges2fashion", 32)
    assert calls == [40, 40]
    (isolated_data / "edges2fashion" / "train.npz").write_bytes(b"not a zip")
    assert torch.equal(load_data("edges2fashion", 32).at(32, "source"), first.at(32, "source"))
    assert calls == [40, 40, 40]


def test_edges2fashion_without_fashion_mnist_says_where_it_looked(isolated_data):
    with pytest.raises(GanforgeError, match="fashion-mnist"):
        load_data("edges2fashion", 32)


def test_a_dataset_without_pairs_points_to_its_paired_analogue(fake_fashion_both):
    with pytest.raises(GanforgeError, match=r"no paired images.*edges2fashion"):
        load_data("fashion-mnist", 8, needs=PAIRS)
    with pytest.raises(GanforgeError, match=r"no paired images.*gray2emoji"):
        load_data("emoji", 8, needs=PAIRS)


def test_the_paired_datasets_are_listed(isolated_data, tmp_path):
    rows = {r["name"]: r for r in data_status()}
    assert {"edges2fashion", "gray2emoji"} <= set(rows)
    assert rows["edges2fashion"]["found"] is None and "dataset-fashion-mnist" in rows["edges2fashion"]["install"]
    with pytest.raises(GanforgeError, match=r"edges2fashion, gray2emoji"):
        load_data(str(tmp_path / "nowhere"), 8)
    with pytest.raises(GanforgeError, match=r"edges2fashion, gray2emoji"):
        prepare("nothing-of-that-name")


def test_prepare_edges2fashion_caches_both_splits(fake_fashion_both, isolated_data):
    rows = {r["name"]: r for r in data_status()}
    assert "made on first use" in rows["edges2fashion"]["found"]
    assert prepare("edges2fashion") == isolated_data / "edges2fashion"
    assert sorted(p.name for p in (isolated_data / "edges2fashion").iterdir()) == ["test.npz", "train.npz"]
    assert "cached" in {r["name"]: r for r in data_status()}["edges2fashion"]["found"]


# ---------------------------------------------------------------------------------------------- gray2emoji

def _fake_emoji(root: Path, n: int = 60) -> Path:
    """Class subfolders of 64px RGB squares, each a different colour: the emoji folder's shape."""
    rng = np.random.default_rng(0)
    for i in range(n):
        _png(root / ("animals" if i % 3 else "food") / f"{i:04x}.png", _flat(rng.integers(0, 256, 3), 64, 64))
    return root


def test_gray2emoji_split_is_disjoint_deterministic_and_the_source_is_luma(isolated_data, monkeypatch):
    import zlib

    folder = _fake_emoji(isolated_data / "fake-emoji")
    monkeypatch.setitem(RENDERED, "emoji", lambda cache, size: folder)
    train = load_data("gray2emoji", 64)
    test = load_data("gray2emoji", 64, "test")
    assert len(train) + len(test) == 60 and len(test) > 0
    files = sorted(f.relative_to(folder).as_posix() for f in folder.rglob("*.png"))
    held = [f for f in files if zlib.crc32(f.encode()) % 10 == 0]
    assert len(test) == len(held) and all(paired.gray2emoji_split(f) == "test" for f in held)
    train_px = {tuple(t.reshape(3, -1)[:, 0].tolist()) for t in train.images}
    test_px = {tuple(t.reshape(3, -1)[:, 0].tolist()) for t in test.images}
    assert not train_px & test_px, "an emoji in both splits"
    assert torch.equal(load_data("gray2emoji", 64, "test").images, test.images), "the split must not change"
    assert train.classes == ("animals", "food") and train.labels is not None and train.channels == 3
    for rgb, grey in zip(train.images[:5], train.at(64, "source")[:5]):
        expect = np.asarray(Image.fromarray(rgb.permute(1, 2, 0).numpy()).convert("L"))
        assert all(np.array_equal(grey[c].numpy(), expect) for c in range(3))
    assert load_data("gray2emoji", 32).images.shape[-1] == 32
    with pytest.raises(GanforgeError, match="colourisation"):
        load_data("gray2emoji", 64, channels=1)


def test_gray2emoji_without_the_font_says_how_to_get_it(isolated_data, monkeypatch, tmp_path):
    monkeypatch.setenv("GANFORGE_EMOJI_FONT", str(tmp_path / "no-such-font.ttf"))
    with pytest.raises(GanforgeError, match="fonts-noto-color-emoji"):
        load_data("gray2emoji", 64, needs=PAIRS)


def test_gray2emoji_from_real_emoji(isolated_data, monkeypatch):
    from ganforge.data.emoji import find_emoji_test, find_font, render_emoji_folder

    try:
        find_font()
    except GanforgeError:
        pytest.skip("fonts-noto-color-emoji is not installed")
    if find_emoji_test() is None:
        pytest.skip("unicode-data (emoji-test.txt) is not installed")
    folder = isolated_data / "emoji-sample"
    render_emoji_folder(folder, size=64, limit=40)  # a sample: the full render takes a while
    monkeypatch.setitem(RENDERED, "emoji", lambda cache, size: folder)
    train, test = load_data("gray2emoji", 64), load_data("gray2emoji", 64, "test", direction="BtoA")
    assert len(train) + len(test) == 40
    img = train.images.float()
    assert (img[:, 0] - img[:, 1]).abs().max() > 32, "the targets are in colour"
    src = train.at(64, "source")
    assert torch.equal(src[:, 0], src[:, 1]) and torch.equal(src[:, 1], src[:, 2]), "the sources are grey"
    assert torch.equal(test.at(64, "image")[:, 0], test.at(64, "image")[:, 2]), "BtoA: the grey is the target"
