"""Data loading: folders of odd and broken images, IDX files, and where named datasets are looked up.

Every picture here is built so that a wrong conversion shows up as wrong pixels: transparent regions must
come out white, centre crops must keep only the middle band, unreadable files must be skipped and named.
"""
from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_idx
from ganforge.data.sources import data_status, load_data, load_folder, locate, read_idx
from ganforge.registry import GanforgeError

R = 16  # target resolution; sources are 32px (or 64x32), so the resize path runs too

RGB = (10, 120, 230)
GREY = 77
JPEG_RGB = (200, 40, 40)
MAGENTA = (255, 0, 255)
YELLOW = (255, 255, 0)
BLUE = (0, 0, 255)
GREEN = (0, 200, 0)


# ------------------------------------------------------------------------------------- picture makers

def _uniform(colour, size=32) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (size, size, len(colour))).copy()


def save_rgb(path: Path, colour=RGB):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_uniform(colour), "RGB").save(path)


def save_grey(path: Path, value=GREY):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), value, np.uint8), "L").save(path)


def save_rgba_half_transparent(path: Path):
    """Left half fully transparent (and black underneath), right half opaque blue."""
    a = np.zeros((32, 32, 4), np.uint8)
    a[:, 16:] = (*BLUE, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGBA").save(path)


def save_palette_transparent(path: Path):
    """Palette image: index 0 (black) is transparent and fills the top half; index 1 (green) the bottom."""
    idx = np.zeros((32, 32), np.uint8)
    idx[16:] = 1
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, *GREEN] + [0] * (256 - 2) * 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, transparency=0)
    with Image.open(path) as check:  # the file really is a palette image with transparency
        assert check.mode == "P" and "transparency" in check.info


def save_jpeg(path: Path, colour=JPEG_RGB, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = _uniform(colour) if mode == "RGB" else np.full((32, 32), colour, np.uint8)
    Image.fromarray(arr, mode).save(path, format="JPEG", quality=95)


def save_wide(path: Path):
    """64 wide x 32 high: red | magenta | blue bands; a centre crop keeps only magenta."""
    a = np.zeros((32, 64, 3), np.uint8)
    a[:, :16] = (255, 0, 0)
    a[:, 16:48] = MAGENTA
    a[:, 48:] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path)


def save_tall(path: Path):
    """32 wide x 64 high: red / yellow / blue bands; a centre crop keeps only yellow."""
    a = np.zeros((64, 32, 3), np.uint8)
    a[:16] = (255, 0, 0)
    a[16:48] = YELLOW
    a[48:] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, "RGB").save(path)


def save_bilevel(path: Path):
    """Mode '1': left half black, right half white."""
    a = np.zeros((32, 32), bool)
    a[:, 16:] = True
    img = Image.fromarray(a)
    assert img.mode == "1"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_garbage(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a picture at all \x00\x01\x02" * 20)


def save_truncated_png(path: Path):
    rng = np.random.default_rng(0)  # noise: a big IDAT, so half the file cuts through pixel data
    buf = path.parent / (path.name + ".full")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
    data = buf.read_bytes()
    buf.unlink()
    path.write_bytes(data[: len(data) // 2])


def odd_folder(root: Path) -> Path:
    """Nested folders with every odd kind of file; 7 readable images, 2 broken, 1 text file."""
    save_rgb(root / "a_rgb.png")
    save_grey(root / "level1" / "b_grey.png")
    save_rgba_half_transparent(root / "level1" / "level2" / "c_rgba.png")
    save_palette_transparent(root / "level1" / "level2" / "d_palette.png")
    save_jpeg(root / "photos" / "e_photo.JPG")  # upper-case extension
    save_wide(root / "photos" / "f_wide.png")
    save_bilevel(root / "g_bilevel.png")
    save_garbage(root / "broken" / "x.png")
    save_truncated_png(root / "broken" / "truncated.png")
    (root / "notes.txt").write_text("not an image, to be ignored\n")
    return root


def hwc(images: torch.Tensor) -> list[np.ndarray]:
    """uint8 [N, C, R, R] -> list of int HxWxC arrays (for pixel checks)."""
    return [a.astype(int) for a in images.permute(0, 2, 3, 1).numpy()]


def only_one(arrays, predicate, what: str) -> np.ndarray:
    hits = [a for a in arrays if predicate(a)]
    assert len(hits) == 1, f"expected exactly one {what} among the loaded images, found {len(hits)}"
    return hits[0]


# ------------------------------------------------------------------------------------- folders

def test_odd_folder_loads_what_it_can_and_reports_the_rest(tmp_path):
    root = odd_folder(tmp_path / "odd")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable") as record:
        images, report = load_folder(root, R)

    assert images.dtype == torch.uint8
    assert tuple(images.shape) == (7, 3, R, R)  # mixed colours -> RGB
    assert report["found"] == 9                 # the .txt is not counted
    assert report["loaded"] == 7
    assert report["skipped"] == 2
    names = " ".join(report["skipped_files"])
    assert "x.png" in names and "truncated.png" in names
    assert "notes.txt" not in names
    message = " ".join(str(w.message) for w in record)
    assert "x.png" in message and "truncated.png" in message


def test_odd_folder_pixels(tmp_path):
    root = odd_folder(tmp_path / "odd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, _ = load_folder(root, R)
    arrays = hwc(images)

    def close(a, colour, tol=0):
        return np.all(np.abs(a - np.array(colour)) <= tol)

    only_one(arrays, lambda a: close(a, RGB), "uniform RGB image")
    only_one(arrays, lambda a: close(a, (GREY, GREY, GREY)), "grey image repeated to 3 channels")
    only_one(arrays, lambda a: close(a, JPEG_RGB, tol=8), "JPEG")

    # RGBA: the transparent left half is composited over white; the opaque right half keeps its colour
    only_one(arrays, lambda a: close(a[:, :4], (255, 255, 255)) and close(a[:, -4:], BLUE),
             "RGBA image with a white (formerly transparent) left side")
    # palette with a transparent index: top half white, bottom half the palette's green
    only_one(arrays, lambda a: close(a[:4], (255, 255, 255)) and close(a[-4:], GREEN),
             "palette image with a white (formerly transparent) top")
    # 64x32 -> centre crop keeps the magenta middle band only, no red or blue from the sides
    only_one(arrays, lambda a: close(a, MAGENTA), "centre-cropped wide image")
    # 1-bit: black left, white right, identical channels
    only_one(arrays, lambda a: close(a[:, :4], (0, 0, 0)) and close(a[:, -4:], (255, 255, 255)),
             "1-bit image")


def test_transparent_region_is_plus_one_after_batch(tmp_path):
    folder = tmp_path / "alpha"
    save_rgba_half_transparent(folder / "deep" / "er" / "a.png")
    data = load_data(str(folder), R)
    assert tuple(data.images.shape) == (1, 3, R, R)
    assert torch.all(data.images[0, :, :, :4] == 255)
    x = data.batch(torch.arange(len(data)))
    assert x.dtype == torch.float32
    assert torch.allclose(x[0, :, :, :4], torch.ones_like(x[0, :, :, :4]), atol=1e-6)
    # opaque blue on the right: R and G at -1, B at +1
    right = x[0, :, :, -4:]
    assert torch.allclose(right[0], torch.full_like(right[0], -1.0), atol=1e-6)
    assert torch.allclose(right[2], torch.full_like(right[2], 1.0), atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1
    assert data.report["skipped"] == 0 and data.report["loaded"] == 1


def test_palette_transparency_alone(tmp_path):
    folder = tmp_path / "pal"
    save_palette_transparent(folder / "p.png")
    data = load_data(str(folder), R)
    a = hwc(data.images)[0]
    assert np.all(a[:4] == 255)
    assert np.all(a[-4:] == np.array(GREEN))


def test_centre_crop_of_tall_and_wide(tmp_path):
    folder = tmp_path / "crop"
    save_tall(folder / "tall.png")
    save_wide(folder / "wide.png")
    images, report = load_folder(folder, R)
    assert tuple(images.shape) == (2, 3, R, R)
    arrays = hwc(images)
    only_one(arrays, lambda a: np.all(a == np.array(YELLOW)), "centre-cropped tall image")
    only_one(arrays, lambda a: np.all(a == np.array(MAGENTA)), "centre-cropped wide image")
    assert report["skipped"] == 0


def test_no_warning_when_nothing_is_skipped(tmp_path):
    folder = tmp_path / "clean"
    save_rgb(folder / "a.png")
    save_grey(folder / "b.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, report = load_folder(folder, R)
    assert report == {"source": str(folder), "found": 2, "loaded": 2, "skipped": 0, "skipped_files": []}


def test_channels_auto_all_grey_is_one_channel(tmp_path):
    folder = tmp_path / "grey"
    save_grey(folder / "a.png")
    save_bilevel(folder / "sub" / "b.png")
    save_jpeg(folder / "sub" / "c.jpg", colour=150, mode="L")
    images, report = load_folder(folder, R)
    assert tuple(images.shape) == (3, 1, R, R) and images.dtype == torch.uint8
    assert report["loaded"] == 3


def test_channels_auto_mixed_is_three(tmp_path):
    folder = tmp_path / "mixed"
    save_grey(folder / "a.png")
    save_rgb(folder / "b.png")
    images, _ = load_folder(folder, R)
    assert tuple(images.shape) == (2, 3, R, R)
    arrays = hwc(images)
    only_one(arrays, lambda a: np.all(a == GREY), "grey image as three equal channels")
    only_one(arrays, lambda a: np.all(a == np.array(RGB)), "colour image")


def test_channels_forced_three_on_grey(tmp_path):
    folder = tmp_path / "grey"
    save_grey(folder / "a.png")
    save_bilevel(folder / "b.png")
    images, _ = load_folder(folder, R, channels=3)
    assert tuple(images.shape) == (2, 3, R, R)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    data = load_data(str(folder), R, channels=3)
    assert data.channels == 3


def test_channels_forced_one_on_mixed(tmp_path):
    folder = tmp_path / "mixed"
    save_grey(folder / "a.png")
    save_rgb(folder / "b.png")
    save_rgba_half_transparent(folder / "c.png")
    images, _ = load_folder(folder, R, channels=1)
    assert tuple(images.shape) == (3, 1, R, R) and images.dtype == torch.uint8
    arrays = hwc(images)
    only_one(arrays, lambda a: np.all(a == GREY), "grey image kept as is")
    # the transparent half of the RGBA image is white in grey too
    assert any(np.all(a[:, :4] == 255) for a in arrays)


def test_channels_forced_one_converts_colour_to_luminance(tmp_path):
    """Forcing one channel must turn colour into grey (ITU-R 601 luma, as PIL's convert('L')), not keep
    whichever channel happens to come first: pure blue is dark grey (29), not black."""
    folder = tmp_path / "colour"
    save_rgb(folder / "blue.png", colour=BLUE)
    save_rgb(folder / "rgb.png", colour=RGB)
    images, _ = load_folder(folder, R, channels=1)
    got = sorted(int(a[0, 0, 0]) for a in hwc(images))
    expected = sorted(int(np.asarray(Image.new("RGB", (1, 1), c).convert("L"))[0, 0]) for c in (BLUE, RGB))
    assert got == expected, f"grey values {got}, expected luminance {expected}"


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG (mode I;16) spans 0..65535: mid-grey 32768 must load as about 128, not 255."""
    folder = tmp_path / "deep"
    folder.mkdir()
    a = np.zeros((32, 32), np.uint16)
    a[:, 16:] = 32768
    Image.fromarray(a).save(folder / "g16.png")
    with Image.open(folder / "g16.png") as check:
        assert check.mode.startswith("I")
    images, _ = load_folder(folder, R)
    assert tuple(images.shape) == (1, 1, R, R)
    assert int(images[0, 0, 0, 0]) == 0
    assert abs(int(images[0, 0, 0, -1]) - 128) <= 1, f"mid-grey loaded as {int(images[0, 0, 0, -1])}"


def test_empty_folder_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(GanforgeError) as e:
        load_folder(folder, R)
    assert str(folder) in str(e.value)
    with pytest.raises(GanforgeError) as e:
        load_data(str(folder), R)
    assert str(folder) in str(e.value)


def test_folder_of_non_images_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("hi")
    (folder / "sub" / "data.csv").write_text("1,2,3")
    (folder / "sub" / "png").write_bytes(b"\x89PNG")  # no extension: not looked at
    with pytest.raises(GanforgeError) as e:
        load_data(str(folder), R)
    assert str(folder) in str(e.value)


def test_folder_of_only_broken_images_is_an_error(tmp_path):
    folder = tmp_path / "broken"
    save_garbage(folder / "x.png")
    save_garbage(folder / "sub" / "y.jpg")
    save_truncated_png(folder / "z.png")
    with pytest.raises(GanforgeError) as e:
        load_folder(folder, R)
    msg = str(e.value)
    assert str(folder) in msg and "3" in msg
    assert "x.png" in msg


def test_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(GanforgeError) as e:
        load_data("no-such-thing", 32)
    assert "no-such-thing" in str(e.value) and "fashion-mnist" in str(e.value)
    with pytest.raises(GanforgeError):
        load_data(str(tmp_path / "nope"), 32)
    one_file = tmp_path / "one.png"
    save_rgb(one_file)
    with pytest.raises(GanforgeError):
        load_folder(one_file, 32)


# ------------------------------------------------------------------------------------- IDX files

def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_read_idx_plain_and_gz(tmp_path):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    plain = tmp_path / "plain-idx3-ubyte"
    plain.write_bytes(_idx_bytes(arr))
    out = read_idx(plain)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, arr)

    gz = tmp_path / "packed-idx3-ubyte.gz"
    with gzip.open(gz, "wb") as f:
        f.write(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(gz), arr)

    folder = write_idx(tmp_path / "fm", n=12)
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    assert images.shape == (12, 28, 28) and labels.shape == (12,)
    assert labels.max() < 10


def _broken_idx(kind: str, folder: Path) -> Path:
    good = _idx_bytes(np.ones((4, 28, 28), np.uint8))
    if kind == "truncated-data":
        p = folder / "a-idx3-ubyte"
        p.write_bytes(good[:-100])
    elif kind == "truncated-header":
        p = folder / "a-idx3-ubyte"
        p.write_bytes(good[:9])
    elif kind == "truncated-gz":
        p = folder / "a-idx3-ubyte.gz"
        z = gzip.compress(good)
        p.write_bytes(z[: len(z) // 2])
    elif kind == "text":
        p = folder / "a-idx3-ubyte"
        p.write_text("<html>404 not found</html>")
    elif kind == "float-idx":
        p = folder / "a-idx3-ubyte"
        p.write_bytes(struct.pack(">BBBBI", 0, 0, 0x0D, 1, 2) + struct.pack(">ff", 1.0, 2.0))
    elif kind == "empty":
        p = folder / "a-idx3-ubyte"
        p.write_bytes(b"")
    elif kind == "not-gzip":
        p = folder / "a-idx3-ubyte.gz"
        p.write_bytes(good)  # named .gz, but plain bytes
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize("kind", ["truncated-data", "truncated-header", "truncated-gz", "text", "float-idx",
                                  "empty", "not-gzip"])
def test_read_idx_broken_is_a_clear_error(tmp_path, kind):
    path = _broken_idx(kind, tmp_path)
    with pytest.raises(GanforgeError) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_truncated_download_in_the_cache_is_a_clear_error(fake_fashion):
    """A half-downloaded .gz in the cache (the usual way IDX files break) must not end in a traceback."""
    p = fake_fashion / "train-images-idx3-ubyte.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(GanforgeError):
        load_data("fashion-mnist", 32)


def test_fashion_at_32_is_padded_28(fake_fashion):
    data = load_data("fashion-mnist", 32)
    assert data.images.dtype == torch.uint8
    assert tuple(data.images.shape) == (96, 1, 32, 32)
    assert data.labels is not None and tuple(data.labels.shape) == (96,)
    assert len(data.classes) == 10 and data.name == "fashion-mnist"
    im = data.images[:, 0]
    for border in (im[:, 0:2, :], im[:, 30:32, :], im[:, :, 0:2], im[:, :, 30:32]):
        assert int(border.max()) == 0  # 2px of black padding on every side
    original = read_idx(fake_fashion / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(im[:, 2:30, 2:30].numpy(), original)
    x = data.batch(torch.arange(10))
    assert tuple(x.shape) == (10, 1, 32, 32)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert float(x.min()) == pytest.approx(-1) and float(x.max()) > 0.5


def test_fashion_at_16(fake_fashion):
    data = load_data("fashion-mnist", 16)
    assert tuple(data.images.shape) == (96, 1, 16, 16) and data.images.dtype == torch.uint8
    assert data.resolution == 16 and data.channels == 1
    assert int(data.images[:, :, 0, :].max()) == 0  # the padding survives as a dark border
    assert int(data.images.max()) > 100             # and the blobs survive the shrink
    x = data.batch(torch.arange(len(data)))
    # uint8 0 -> -1 and 255 -> +1 exactly: the border is -1, the blobs' brightest pixels map through 2/255
    assert float(x.min()) == -1.0
    assert float(x.max()) == pytest.approx(int(data.images.max()) * 2 / 255 - 1, abs=1e-6)


def test_fashion_forced_three_channels(fake_fashion):
    data = load_data("fashion-mnist", 32, channels=3)
    assert tuple(data.images.shape) == (96, 3, 32, 32)
    assert torch.equal(data.images[:, 0], data.images[:, 2])


def test_folder_of_idx_files_as_path(tmp_path):
    folder = write_idx(tmp_path / "my-idx", n=20)
    data = load_data(str(folder), 32)
    assert tuple(data.images.shape) == (20, 1, 32, 32) and data.labels is not None


# ------------------------------------------------------------------------------------- lookup order

def _system_root(tmp_path: Path, n: int, plain: bool = False) -> Path:
    root = tmp_path / "system"
    folder = write_idx(root / "fashion-mnist", n=n, seed=1)
    if plain:  # Debian ships them uncompressed
        for gz in list(folder.glob("*.gz")):
            with gzip.open(gz, "rb") as src, open(gz.with_suffix(""), "wb") as dst:
                shutil.copyfileobj(src, dst)
            gz.unlink()
    return root


def test_cache_is_found_before_system(fake_fashion, tmp_path, monkeypatch):
    root = _system_root(tmp_path, n=40)
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", str(root))
    assert locate("fashion-mnist") == fake_fashion
    data = load_data("fashion-mnist", 32)
    assert len(data) == 96 and data.source == str(fake_fashion)


def test_cache_raw_subfolder_is_found(isolated_data):
    raw = write_idx(isolated_data / "fashion-mnist" / "raw", n=24)
    assert locate("fashion-mnist") == raw
    assert len(load_data("fashion-mnist", 32)) == 24


def test_system_dir_found_when_cache_empty(isolated_data, tmp_path, monkeypatch):
    root = _system_root(tmp_path, n=40, plain=True)
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", str(root))
    data = load_data("fashion-mnist", 32)
    assert len(data) == 40 and data.source == str(root / "fashion-mnist")


def test_incomplete_cache_falls_through_to_system(isolated_data, tmp_path, monkeypatch):
    partial = write_idx(isolated_data / "fashion-mnist", n=96)
    (partial / "train-labels-idx1-ubyte.gz").unlink()  # three of four files: not a dataset
    root = _system_root(tmp_path, n=40)
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", str(root))
    assert locate("fashion-mnist") == root / "fashion-mnist"


def test_not_found_lists_every_place_tried(isolated_data, tmp_path, monkeypatch):
    sys_a, sys_b = tmp_path / "sysA", tmp_path / "sysB"
    sys_a.mkdir()
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", f"{sys_a}:{sys_b}")
    with pytest.raises(GanforgeError) as e:
        load_data("fashion-mnist", 32)
    msg = str(e.value)
    assert "\n" not in msg
    for place in (isolated_data / "fashion-mnist", isolated_data / "fashion-mnist" / "raw",
                  sys_a / "fashion-mnist", sys_b / "fashion-mnist"):
        assert str(place) in msg, f"{place} missing from: {msg}"
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download" in msg.lower()


def test_not_found_with_no_system_dirs(isolated_data):
    with pytest.raises(GanforgeError) as e:
        locate("fashion-mnist")
    msg = str(e.value)
    assert str(isolated_data / "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_data_status_not_found(isolated_data):
    rows = {r["name"]: r for r in data_status()}
    assert {"fashion-mnist", "mnist"} <= set(rows)
    assert rows["fashion-mnist"]["found"] is None
    assert rows["mnist"]["found"] is None
    assert rows["fashion-mnist"]["install"] == "apt-get install dataset-fashion-mnist"
    assert rows["fashion-mnist"]["classes"] == 10


def test_data_status_found(fake_fashion, tmp_path, monkeypatch):
    rows = {r["name"]: r for r in data_status()}
    assert rows["fashion-mnist"]["found"] == str(fake_fashion)
    assert rows["mnist"]["found"] is None
    # found in a system dir too
    shutil.rmtree(fake_fashion)
    root = _system_root(tmp_path, n=8)
    monkeypatch.setenv("GANFORGE_SYSTEM_DATA", str(root))
    rows = {r["name"]: r for r in data_status()}
    assert rows["fashion-mnist"]["found"] == str(root / "fashion-mnist")


# ------------------------------------------------------------------------------------- labels, pairs, resolutions

def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_named_datasets_keep_labels_and_class_names(fake_fashion):
    data = load_data("fashion-mnist", 16)
    assert data.labels is not None and data.labels.dtype == torch.int64 and len(data.labels) == len(data)
    assert data.classes[0] == "T-shirt/top" and len(data.classes) == 10
    assert data.provides == {"image", "label"}


def test_class_subfolders_are_labels_in_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("zebra", 3), ("apple", 2)):
        for i in range(n):
            _png(tmp_path / "f" / cls / "deeper" / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    data = load_data(str(tmp_path / "f"), 8)
    assert data.classes == ("apple", "zebra")
    assert sorted(data.labels.tolist()) == [0, 0, 1, 1, 1]
    assert "label" in data.provides


def test_images_beside_the_subfolders_mean_no_classes(tmp_path):
    rng = np.random.default_rng(0)
    for p in ("a/1.png", "b/2.png", "3.png"):
        _png(tmp_path / "f" / p, rng.integers(0, 255, (8, 8), dtype=np.uint8))
    data = load_data(str(tmp_path / "f"), 8)
    assert data.labels is None and data.classes == () and data.provides == {"image"}


def test_side_by_side_pairs_are_split_not_cropped(tmp_path):
    left = np.zeros((16, 16, 3), np.uint8)
    left[:, :, 0] = 255            # A: red
    right = np.zeros((16, 16, 3), np.uint8)
    right[:, :, 2] = 255           # B: blue
    _png(tmp_path / "pairs" / "0.png", np.concatenate([left, right], axis=1))
    data = load_data(str(tmp_path / "pairs"), 16, needs={"image", "source"})
    assert data.provides == {"image", "source"}
    src, img = data.at(16, "source")[0], data.at(16, "image")[0]
    assert src[0].min() == 255 and src[2].max() == 0, "source must be the whole left half (A)"
    assert img[2].min() == 255 and img[0].max() == 0, "image must be the whole right half (B)"
    # without asking for pairs, the same file is one (centre-cropped) image
    assert load_data(str(tmp_path / "pairs"), 16).provides == {"image"}


def test_pairs_from_A_and_B_folders_match_by_name_and_odd_pairs_are_an_error(tmp_path):
    for name, value in (("x", 10), ("y", 200)):
        _png(tmp_path / "p" / "A" / f"{name}.png", np.full((8, 8), value, np.uint8))
        _png(tmp_path / "p" / "B" / f"{name}.png", np.full((8, 8), 255 - value, np.uint8))
    data = load_data(str(tmp_path / "p"), 8, needs={"image", "source"})
    assert len(data) == 2
    assert (data.at(8, "source")[:, 0, 0, 0] + data.at(8, "image")[:, 0, 0, 0]).tolist() == [255, 255]
    _png(tmp_path / "p" / "B" / "only-in-b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(GanforgeError, match="only-in-b.png.*no partner"):  # never silently dropped
        load_data(str(tmp_path / "p"), 8, needs={"image", "source"})
    _png(tmp_path / "square" / "0.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(GanforgeError, match="width twice the height"):
        load_data(str(tmp_path / "square"), 8, needs={"image", "source"})
    with pytest.raises(GanforgeError, match="no paired images"):
        load_data("fashion-mnist", 8, needs={"image", "source"})


def test_any_resolution_on_request_is_antialiased_and_cached(fake_fashion):
    data = load_data("fashion-mnist", 32)
    small = data.at(8)
    assert small.shape[-2:] == (8, 8)
    assert data.at(8) is small, "a resolution that fits the budget is made once"
    # antialiased: close to the 4x4 area average of the base (point sampling picks one pixel of each 4x4 block and
    # lands far from it on the blobs' edges)
    area = torch.nn.functional.avg_pool2d(data.images.float(), 4)
    assert (small.float() - area).abs().mean() < 3
    nearest = torch.nn.functional.interpolate(data.images.float(), size=8, mode="nearest")
    assert (nearest - area).abs().mean() > 3 * (small.float() - area).abs().mean()
    idx = torch.tensor([3, 1, 4])
    assert torch.equal(data.take(idx, 8)["image"], small[idx])
    tight = load_data("fashion-mnist", 32, memory_mb=data.images.numel() / 2**20)  # no room for more
    assert torch.equal(tight.take(idx, 8)["image"], small[idx]) and not tight._cache


def test_a_folder_larger_than_the_budget_is_streamed_with_the_same_pixels(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(6):
        _png(tmp_path / "f" / ("a" if i % 2 else "b") / f"{i}.png", rng.integers(0, 255, (30, 37, 3), dtype=np.uint8))
    memory = load_data(str(tmp_path / "f"), 16)
    streamed = load_data(str(tmp_path / "f"), 16, memory_mb=1e-4)  # 100 bytes: does not fit
    assert not memory.streamed and streamed.streamed
    assert len(streamed) == 6 and streamed.classes == ("a", "b") and streamed.channels == 3
    idx = torch.tensor([5, 0, 2])
    for res in (16, 8):
        a, b = memory.take(idx, res), streamed.take(idx, res)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    with pytest.raises(GanforgeError, match="streamed"):
        _ = streamed.images


def test_batches_serve_resolution_and_batch_size_on_request_in_a_fixed_order(fake_fashion):
    from ganforge.data.batches import Batches

    data = load_data("fashion-mnist", 16)
    b = Batches(data, seed=3, device=torch.device("cpu"), keys={"image", "label"})
    first = b.next(16, 8)
    assert first["image"].shape == (8, 1, 16, 16) and first["image"].dtype == torch.float32
    assert first["image"].min() >= -1 and first["image"].max() <= 1 and first["label"].shape == (8,)
    second = b.next(8, 4)  # the schedule changed both: the next images of the same epoch, smaller
    assert second["image"].shape == (4, 1, 8, 8)
    state = b.state()
    assert state == {"epoch": 0, "offset": 12}
    third = b.next(8, 4)
    again = Batches(data, seed=3, device=torch.device("cpu"), keys={"image", "label"})
    again.restore(state)
    assert torch.equal(again.next(8, 4)["image"], third["image"])
    with pytest.raises(GanforgeError, match="provides"):
        Batches(data, seed=3, device=torch.device("cpu"), keys={"image", "source"})


def test_emoji_is_a_named_labelled_colour_dataset(isolated_data):
    from ganforge.data.emoji import find_font

    try:
        find_font()
    except GanforgeError:
        pytest.skip("fonts-noto-color-emoji is not installed")
    data = load_data("emoji", 32)
    assert data.name == "emoji" and data.channels == 3 and len(data) > 1000
    assert "smileys-and-emotion" in data.classes and data.labels is not None
    with pytest.raises(GanforgeError, match="no test split"):
        load_data("emoji", 32, split="test")


def test_a_truncated_jpeg_is_skipped_alike_in_memory_and_streamed(tmp_path):
    import io

    rng = np.random.default_rng(2)
    for i in range(5):
        _png(tmp_path / "f" / f"{i}.png", rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (tmp_path / "f" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header intact
    with pytest.warns(UserWarning):
        memory = load_data(str(tmp_path / "f"), 8, stream="never")
    with pytest.warns(UserWarning):
        streamed = load_data(str(tmp_path / "f"), 8, stream="always")
    assert len(memory) == len(streamed) == 5, "both must hold the same files, so both read the same order"
    assert streamed.report["skipped"] == memory.report["skipped"] == 1
    assert torch.equal(memory.take(torch.arange(5))["image"], streamed.take(torch.arange(5))["image"])


def test_a_base_of_28_serves_lower_resolutions_with_the_same_framing(fake_fashion):
    data = load_data("fashion-mnist", 28)
    assert data.resolution == 28
    small = data.at(14)
    # no 32px padding slipped in: a plain 2x2 average of the base, give or take the antialiasing filter's rounding
    pooled = torch.nn.functional.avg_pool2d(data.images.float(), 2)
    assert (small.float() - pooled).abs().mean() < 3
