"""Where images come from: named datasets (IDX files), folders of images.

Named datasets are looked up in this order: an explicit path, the user cache (`$GANFORGE_DATA`,
default `~/.cache/ganforge`), system locations (Debian's `/usr/share/datasets/...`), then torchvision's
download into the cache. When nothing is found, the error lists every place tried.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import GanforgeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
IDX_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class NamedDataset:
    name: str
    system_dirs: tuple[str, ...]     # where distributions install it
    torchvision_cls: str             # the official download
    debian_package: str | None
    classes: tuple[str, ...]


DATASETS = {
    "fashion-mnist": NamedDataset(
        "fashion-mnist", ("/usr/share/datasets/fashion-mnist",), "FashionMNIST", "dataset-fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot")),
    "mnist": NamedDataset(
        "mnist", ("/usr/share/datasets/mnist",), "MNIST", None, tuple(str(i) for i in range(10))),
}


def _emoji_folder(cache: Path, size: int) -> Path:
    from .emoji import ensure_emoji  # Noto Color Emoji by Unicode group (fonts-noto-color-emoji, unicode-data)

    return ensure_emoji(cache, size=size)


# Named datasets that are folders made on this machine from a package's files (class subfolders = labels):
# name -> maker(cache, size) of the folder
RENDERED = {"emoji": _emoji_folder}


def rendered_folder(name: str, resolution: int) -> Path:
    """The folder of a RENDERED dataset at `resolution` (at least 32px), made in the cache on first use."""
    return RENDERED[name](cache_dir(), max(32, resolution))


def cache_dir() -> Path:
    return Path(os.environ.get("GANFORGE_DATA") or Path.home() / ".cache" / "ganforge")


def _system_dirs(ds: NamedDataset) -> tuple[str, ...]:
    # GANFORGE_SYSTEM_DATA replaces the system locations (tests use it to stand for a bare machine).
    override = os.environ.get("GANFORGE_SYSTEM_DATA")
    if override is not None:
        return tuple(str(Path(p) / ds.name) for p in override.split(os.pathsep) if p)
    return ds.system_dirs


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_dir_ok(folder: Path, split: str) -> bool:
    return split in IDX_FILES and all(_find_idx(folder, f) for f in IDX_FILES[split])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped): the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a half-downloaded or corrupt .gz
        raise GanforgeError(f"{path} cannot be read ({type(e).__name__}: {e}); delete it and fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise GanforgeError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise GanforgeError(f"{path} is truncated (incomplete IDX header)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise GanforgeError(f"{path} is truncated: header says {dims}, found {data.size} bytes of data")
    return data.reshape(dims)


def locate(name: str, split: str = "train", download: bool | None = None) -> Path:
    """The folder that holds `name`'s IDX files, searched in the documented order; downloads as a last resort."""
    ds = DATASETS[name]
    tried = []
    candidates = [cache_dir() / name, cache_dir() / name / "raw", *map(Path, _system_dirs(ds))]
    for folder in candidates:
        if _idx_dir_ok(folder, split):
            return folder
        tried.append(str(folder))
    if download is None:
        download = os.environ.get("GANFORGE_NO_DOWNLOAD", "") in ("", "0")
    if download:
        try:
            import torchvision.datasets as tvd

            getattr(tvd, ds.torchvision_cls)(root=str(cache_dir() / "torchvision"), train=split == "train",
                                             download=True)
            raw = cache_dir() / "torchvision" / ds.torchvision_cls / "raw"
            if _idx_dir_ok(raw, split):
                return raw
            tried.append(f"torchvision download into {raw} (finished without the IDX files)")
        except Exception as e:  # no network, a mirror down...
            tried.append(f"torchvision download ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
    else:
        tried.append("download (disabled by GANFORGE_NO_DOWNLOAD)")
    hint = f"; on Debian: apt-get install {ds.debian_package}" if ds.debian_package else ""
    raise GanforgeError(
        f"dataset {name!r} ({split}) not found. Looked in: {'; '.join(tried)}. Put the four IDX files in "
        f"{cache_dir() / name}{hint}, or pass the folder that holds them as --data")


def load_idx_dataset(folder: Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(_find_idx(folder, IDX_FILES[split][0]))
    labels = read_idx(_find_idx(folder, IDX_FILES[split][1]))
    if images.ndim != 3 or labels.shape[0] != images.shape[0]:
        raise GanforgeError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------- folders

def _to_array(img, channels: int | None):
    """Any PIL mode -> HxWxC uint8; transparency composited over white."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        # 16-bit and float greys: scale to 8 bits (Pillow's convert("L") would clip them to white)
        a = np.asarray(img, np.float64)
        scale = 65535 if img.mode.startswith("I;16") or a.max() > 255 else 255
        img = Image.fromarray(np.clip(np.rint(a * 255 / scale), 0, 255).astype(np.uint8), "L")
    grey = channels == 1 or (img.mode in ("1", "L") and channels != 3)
    img = img.convert("L" if grey else "RGB")
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _native_channels(mode: str) -> int:
    """The channels `_to_array(img, None)` gives an image of this mode, known from its header alone."""
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return 1
    return 3


def _square_resize(arr: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop to a square, then resize with antialiasing (area-correct when shrinking)."""
    from PIL import Image

    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    arr = arr[top: top + s, left: left + s]
    if s == resolution:
        return arr
    mode = "L" if arr.shape[2] == 1 else "RGB"
    img = Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode)
    out = np.asarray(img.resize((resolution, resolution), Image.LANCZOS))
    return out[:, :, None] if out.ndim == 2 else out


@functools.cache
def _read_errors() -> tuple[type[Exception], ...]:
    """What Pillow raises for a file that is not a readable image (Pillow is imported on first use)."""
    from PIL import Image, UnidentifiedImageError

    return UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError


def read_image(path: Path, resolution: int, channels: int, paired: bool = False) -> dict[str, np.ndarray]:
    """One file -> {"image": HxWxC uint8 at `resolution`} (and "source" for a side-by-side A|B pair: the left
    half is the source A, the right half the target B; the halves are never cropped into one square)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        arr = _to_array(img, channels)
    if arr.shape[2] != channels:
        arr = np.repeat(arr, channels, axis=2)
    if not paired:
        return {"image": _square_resize(arr, resolution)}
    h, w = arr.shape[:2]
    if w != 2 * h:
        raise ValueError(f"{path.name} is {w}x{h}, not a side-by-side A|B pair (width twice the height)")
    return {"source": _square_resize(arr[:, :h], resolution), "image": _square_resize(arr[:, h:], resolution)}


@dataclass
class FolderIndex:
    """What a folder holds, found without decoding it: files (or A/B pairs), class labels, channels."""
    root: Path
    files: list                   # Path, or (Path, Path) for A/ and B/ subfolders of matching names
    labels: list[int] | None
    classes: tuple[str, ...]
    channels: int
    paired: str = ""              # "" | "side-by-side" | "folders"
    skipped: list[str] | None = None
    direction: str = "AtoB"       # paired: "BtoA" serves B as the source and A as the image

    def nbytes(self, resolution: int) -> int:
        fields = 2 if self.paired else 1
        return len(self.files) * fields * self.channels * resolution * resolution


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


SPLIT_DIRS = ("train", "val", "test")  # pix2pix's datasets: facades/train, facades/val, facades/test
DIRECTIONS = ("AtoB", "BtoA")


def _split_subfolders(folder: Path) -> list[str]:
    return [d for d in SPLIT_DIRS if (folder / d).is_dir()]


def _pick_split(folder: Path, split: str) -> Path:
    """folder/train for split "train"; folder/test, else folder/val, for "test"; any other split by its name."""
    wanted = ("train",) if split == "train" else ("test", "val") if split == "test" else (split,)
    for w in wanted:
        if (folder / w).is_dir():
            return folder / w
    has = sorted(p.name + "/" for p in folder.iterdir() if p.is_dir())
    raise GanforgeError(f"{folder} has no {' or '.join(w + '/' for w in wanted)} subfolder for the {split} split "
                        f"(it has {', '.join(has) or 'no subfolders'})")


def _paired_layout(path: Path, split: str) -> tuple[str, Path, Path | None]:
    """Where a paired folder's `split` lies: ("folders", A, B) or ("side-by-side", folder, None).

    The layouts of pix2pix's datasets: side-by-side A|B images in path/train, path/val, path/test (or flat in
    path); A/ and B/ subfolders of matching names, each with train/ and test/ inside (path/A/train/x.png <->
    path/B/train/x.png), or inside each split (path/train/A, path/train/B), or flat. Split "train" reads train/;
    "test" reads test/, else val/. A folder without split subfolders serves all its files for every split:
    nothing is held out there."""
    a, b = path / "A", path / "B"
    if a.is_dir() and b.is_dir():
        if _split_subfolders(a) or _split_subfolders(b):
            return "folders", _pick_split(a, split), _pick_split(b, split)
        return "folders", a, b
    root = _pick_split(path, split) if _split_subfolders(path) else path
    if (root / "A").is_dir() and (root / "B").is_dir():
        return "folders", root / "A", root / "B"
    return "side-by-side", root, None


def _by_name(root: Path) -> dict[Path, Path]:
    """A/ or B/'s images keyed by their path below it without the extension (x.png and x.jpg are one name)."""
    out: dict[Path, Path] = {}
    for p in _image_files(root):
        key = p.relative_to(root).with_suffix("")
        if key in out:
            raise GanforgeError(f"{p} and {out[key].name} share the name {key} in {root}: paired data needs one "
                                f"file per name in A/ and B/")
        out[key] = p
    return out


def _pair_by_name(a_root: Path, b_root: Path) -> list[tuple[Path, Path]]:
    """(A, B) files of the same name; a file with no partner is an error naming it (never silently dropped)."""
    a, b = _by_name(a_root), _by_name(b_root)
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        lone, other = (a[only_a[0]], b_root) if only_a else (b[only_b[0]], a_root)
        more = len(only_a) + len(only_b) - 1
        raise GanforgeError(f"{lone} has no partner of the same name in {other}/ (paired data needs matching names "
                            f"in A/ and B/){f'; {more} more file(s) lack one too' if more else ''}")
    return [(a[k], b[k]) for k in sorted(a)]


def index_folder(path: Path, channels: int | None = None, paired: bool = False, split: str = "train") -> FolderIndex:
    """List a folder's images. Subfolders are classes (as torchvision's ImageFolder) when every image lies in
    one of at least two subfolders. Paired data (pix2pix; see `_paired_layout` for the layouts and how `split`
    picks train/, test/ or val/) has no class labels: subfolders A/ and B/ of matching names, else side-by-side
    A|B images. A lone file in A/ or B/, an A and B of different sizes, a side-by-side image of odd width or
    not twice as wide as high are errors naming the file, found from headers before any training. Files whose
    header cannot be read are skipped and reported."""
    from PIL import Image

    path = Path(path)
    if not path.is_dir():
        raise GanforgeError(f"{path} is not a folder of images")
    root = path
    if paired:
        mode, root, b_root = _paired_layout(path, split)
        if mode == "folders":
            files = _pair_by_name(root, b_root)
            probe = [p for pair in files for p in pair]
            root = Path(os.path.commonpath([root, b_root]))
        else:
            files = probe = _image_files(root)
    else:
        files = probe = _image_files(path)
        mode = ""
    if not files:
        raise GanforgeError(f"no images in {root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    bad, grey, ok, sizes = [], True, set(), {}
    for f in probe:
        try:
            with Image.open(f) as img:
                w, h = img.size
                if mode == "side-by-side" and w % 2:
                    raise GanforgeError(
                        f"{f} is {w}x{h}: its width is odd, so it does not split into two halves A|B (paired data "
                        f"needs side-by-side images of width twice the height)")
                if mode == "side-by-side" and w != 2 * h:
                    raise GanforgeError(
                        f"{f} is {w}x{h}: paired data needs side-by-side A|B images (width twice the height) or "
                        f"subfolders A/ and B/ of matching names")
                img.verify()  # reads the file through: a truncated or corrupt one is found now, not mid-training
                grey = grey and _native_channels(img.mode) == 1
            ok.add(f)
            sizes[f] = (w, h)
        except _read_errors() as e:
            bad.append(f"{f.name} ({type(e).__name__})")
    if mode == "folders":
        for fa, fb in files:
            if fa in ok and fb in ok and sizes[fa] != sizes[fb]:
                raise GanforgeError(f"{fa} is {sizes[fa][0]}x{sizes[fa][1]} but its partner {fb} is "
                                    f"{sizes[fb][0]}x{sizes[fb][1]}: a pair's A and B must have the same size")
    files = [f for f in files if (all(p in ok for p in f) if isinstance(f, tuple) else f in ok)]
    if not files:
        raise GanforgeError(f"none of the {len(probe)} image files in {root} could be read: {', '.join(bad[:5])}")
    labels, classes = None, ()
    if not paired:
        tops = [f.relative_to(path).parts for f in files]
        if all(len(t) > 1 for t in tops) and len({t[0] for t in tops}) >= 2:
            classes = tuple(sorted({t[0] for t in tops}))
            lookup = {c: i for i, c in enumerate(classes)}
            labels = [lookup[t[0]] for t in tops]
    if channels is None:
        channels = 1 if grey else 3
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable file(s) of {len(probe)} in {root}: "
                      f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}", stacklevel=2)
    return FolderIndex(root, files, labels, classes, channels, mode, bad)


def _keep_decodable(index: FolderIndex) -> FolderIndex:
    """Drop the files that do not decode whole (a header check passes a truncated JPEG), so a streamed folder
    holds exactly the files an in-memory load of it keeps: the same N, the same order, no crash mid-training."""
    from PIL import Image

    keep, bad = [], list(index.skipped or [])
    for i, f in enumerate(index.files):
        try:
            for p in (f if isinstance(f, tuple) else (f,)):
                with Image.open(p) as img:
                    img.load()
            keep.append(i)
        except _read_errors() as e:
            bad.append(f"{(f[0] if isinstance(f, tuple) else f).name} ({type(e).__name__})")
    if len(keep) == len(index.files):
        return index
    if not keep:
        raise GanforgeError(f"none of the image files in {index.root} could be read: {', '.join(bad[:5])}")
    warnings.warn(f"skipped {len(index.files) - len(keep)} file(s) of {index.root} that do not decode", stacklevel=3)
    labels = [index.labels[i] for i in keep] if index.labels is not None else None
    return dataclasses.replace(index, files=[index.files[i] for i in keep], labels=labels, skipped=bad)


def read_item(index: FolderIndex, i: int, resolution: int) -> dict[str, np.ndarray]:
    f = index.files[i]
    if index.paired == "folders":
        out = {"source": read_image(f[0], resolution, index.channels)["image"],
               "image": read_image(f[1], resolution, index.channels)["image"]}
    else:
        out = read_image(f, resolution, index.channels, paired=index.paired == "side-by-side")
    if index.paired and index.direction == "BtoA":
        out = {"source": out["image"], "image": out["source"]}
    return out


def load_folder(path: Path, resolution: int, channels: int | None = None) -> tuple[torch.Tensor, dict]:
    """Every image below `path` (recursively) as uint8 [N, C, R, R] (eval's reference sets use this)."""
    data = load_data(str(path), resolution, channels=channels, stream="never")
    return data.images, data.report


# ---------------------------------------------------------------------------------------------- images

def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a uint8 [N, C, H, W] batch of square images. 28x28 digits and clothes are first padded to 32
    (background, as DCGAN and most MNIST GANs feed them), so every resolution sees the same framing."""
    n, c, h, w = images.shape
    if h == resolution and w == resolution:
        return images
    if (h, w) == (28, 28):
        images = F.pad(images, (2, 2, 2, 2))  # uint8 zero = black background
    return _resize(images, resolution)


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Antialiased resize of uint8 [N, C, H, W], no framing rules: how a base resolution serves the others.

    A downscale by a power of two averages k x k boxes (k = the factor), as Progressive GAN's dataset tool
    builds each level by repeated 2x2 averaging: a growing run's reals at R/2 are then exactly (up to uint8
    rounding) the 2x2-pooled reals at R that D sees at the start of a fade-in. Other sizes: bilinear with
    antialiasing."""
    size = images.shape[-1]
    if size == resolution:
        return images
    factor = size // resolution
    box = size == factor * resolution and factor & (factor - 1) == 0
    out = []
    for chunk in images.split(4096):
        if box:
            x = F.avg_pool2d(chunk.float(), factor)
        else:
            x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float in [-1, 1], the range every model here is fed."""
    return images.float().mul_(2 / 255).sub_(1)


IMAGE_KEYS = ("image", "source")  # batch keys that hold images (uint8 in the data, [-1, 1] floats in a batch)


class ImageData:
    """A dataset: images at a base resolution, served at any resolution on request, with labels where the
    source has classes and a `source` image per item for paired data.

    In memory (`fields` holds uint8 [N, C, R, R] per image key), lower resolutions are made by antialiased
    resizing and cached while they fit in `budget` bytes. Streamed (`index` is a FolderIndex), items are read
    from disk one by one (`item`), by DataLoader workers during training; the pixels are the same either way.
    """

    def __init__(self, name: str, source: str, *, fields: dict[str, torch.Tensor] | None = None,
                 index: FolderIndex | None = None, resolution: int = 0, labels: torch.Tensor | None = None,
                 classes: tuple[str, ...] = (), report: dict | None = None, budget: int = 2**31):
        assert (fields is None) != (index is None)
        self.name, self.source, self.classes, self.report = name, source, tuple(classes), report
        self.fields, self.index, self.labels, self.budget = fields, index, labels, budget
        if fields is not None:
            first = fields["image"]
            self._n, self._channels, self._resolution = first.shape[0], first.shape[1], first.shape[2]
        else:
            self._n, self._channels, self._resolution = len(index.files), index.channels, resolution
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    # -- what it is
    def __len__(self) -> int:
        return self._n

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def resolution(self) -> int:
        """The base resolution; `at` and `take` serve any other."""
        return self._resolution

    @property
    def streamed(self) -> bool:
        return self.index is not None

    @property
    def provides(self) -> set[str]:
        keys = set(self.fields) if self.fields is not None else ({"image", "source"} if self.index.paired
                                                                   else {"image"})
        return keys | ({"label"} if self.labels is not None else set())

    @property
    def images(self) -> torch.Tensor:
        """All images at the base resolution (in-memory data only)."""
        if self.fields is None:
            raise GanforgeError(f"{self.name} is streamed from disk; it has no in-memory image tensor")
        return self.fields["image"]

    # -- serving
    def at(self, resolution: int, key: str = "image") -> torch.Tensor:
        """All of `key` at `resolution` (in memory), cached while the cache fits the memory budget."""
        if self.fields is None:
            raise GanforgeError(f"{self.name} is streamed from disk; read it in batches")
        if resolution == self._resolution:
            return self.fields[key]
        hit = self._cache.get((key, resolution))
        if hit is None:
            hit = _resize(self.fields[key], resolution)
            if self._fits(hit.numel()):
                self._cache[(key, resolution)] = hit
        return hit

    def _fits(self, more: int) -> bool:
        used = sum(t.numel() for t in self._cache.values()) + sum(t.numel() for t in self.fields.values())
        return used + more <= self.budget

    def servable(self, resolution: int, key: str = "image") -> bool:
        """Whether `at(resolution)` is (or can become) one in-memory tensor: the base, cached, or fits."""
        if self.fields is None:
            return False
        n = self.fields[key]
        return (resolution == self._resolution or (key, resolution) in self._cache
                or self._fits(n.shape[0] * n.shape[1] * resolution * resolution))

    def item(self, i: int, resolution: int) -> dict[str, torch.Tensor]:
        """One streamed item: uint8 [C, R, R] per image key, and its label; the same pixels `take` gives."""
        try:
            arrays = read_item(self.index, i, self._resolution)
        except _read_errors() as e:  # it decoded when the folder was indexed: the disk changed under the run
            f = self.index.files[i]
            raise GanforgeError(f"{f} can no longer be read ({type(e).__name__}: {e}); restore or remove it and "
                                f"--resume") from None
        out = {}
        for k, a in arrays.items():
            x = torch.from_numpy(np.array(a)).permute(2, 0, 1)  # a writable copy
            out[k] = _resize(x[None], resolution)[0]
        if self.labels is not None:
            out["label"] = self.labels[i]
        return out

    def take(self, index: torch.Tensor, resolution: int | None = None) -> dict[str, torch.Tensor]:
        """Rows `index` as uint8 images [N, C, R, R] per image key (and int64 labels), on the CPU."""
        resolution = resolution or self._resolution
        if self.fields is not None:
            out = {}
            for k in self.fields:
                out[k] = (self.at(resolution, k)[index] if self.servable(resolution, k)
                          else _resize(self.fields[k][index], resolution))
            if self.labels is not None:
                out["label"] = self.labels[index]
            return out
        items = [self.item(int(i), resolution) for i in index]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    def batch(self, index: torch.Tensor, resolution: int | None = None) -> torch.Tensor:
        """uint8 rows -> float images [N, C, R, R] in [-1, 1]."""
        return to_unit_range(self.take(index, resolution)["image"])


def _grey_as(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).contiguous() if channels == 3 else images


def _paired_sets() -> dict:
    from .paired import PAIRED  # paired.py builds on this module

    return PAIRED


def _known_names() -> list[str]:
    return [*DATASETS, *RENDERED, *_paired_sets()]


def _directed(data: ImageData, direction: str) -> ImageData:
    """In-memory paired data served the other way round when `direction` is BtoA."""
    if direction == "BtoA" and data.fields is not None and "source" in data.fields:
        f = data.fields
        data.fields = {**f, "image": f["source"], "source": f["image"]}
        data._cache.clear()
    return data


def load_data(data: str, resolution: int, split: str = "train", channels: int | None = None,
              needs: tuple[str, ...] | set[str] = ("image",), stream: str = "auto",
              memory_mb: float = 4096, direction: str = "AtoB") -> ImageData:
    """`data` is a dataset name (see DATASETS, RENDERED and paired.PAIRED) or a path: a folder of images, or a
    folder of IDX files.

    `needs` says which batch keys the recipe will ask for: with "source", a folder is read as paired data
    (`image` the target B, `source` the generator's input A; `direction` "BtoA" swaps them). The named paired
    datasets (edges2fashion, gray2emoji) always give both. `stream`: "auto" streams a folder from disk when it
    would not fit in `memory_mb`; "always"; "never".
    """
    if direction not in DIRECTIONS:
        raise GanforgeError(f"data.direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    budget = int(memory_mb * 2**20)
    paired = "source" in needs
    paired_sets = _paired_sets()
    if data in paired_sets:
        out = paired_sets[data](resolution, split, channels)
        out.budget = budget
        return _directed(out, direction)
    if data in RENDERED:
        if paired:
            pairs = [n for n in paired_sets if data in n]
            raise GanforgeError(f"{data} has no paired images; a paired model needs a paired dataset "
                                f"({', '.join(pairs or paired_sets)}) or a folder of A|B images")
        if split != "train":
            raise GanforgeError(f"{data} has no {split} split")
        folder = load_data(str(rendered_folder(data, resolution)), resolution, "train", channels, needs, stream,
                           memory_mb)
        folder.name = data
        return folder
    if data in DATASETS:
        if paired:
            analogue = {"fashion-mnist": "edges2fashion (Fashion-MNIST's Canny edges -> the item)"}.get(data)
            raise GanforgeError(f"{data} has no paired images; a paired model needs a paired dataset "
                                f"({analogue or ', '.join(paired_sets)}) or a folder of A|B images")
        ds = DATASETS[data]
        folder = locate(data, split)
        images, labels = load_idx_dataset(folder, split)
        return ImageData(data, str(folder), fields={"image": _grey_as(resize_uint8(images, resolution), channels)},
                         labels=labels, classes=ds.classes, budget=budget)
    path = Path(data).expanduser()
    if not path.exists():
        raise GanforgeError(f"--data {data!r} is neither a known dataset ({', '.join(_known_names())}) nor an "
                            f"existing path")
    if path.is_dir() and _idx_dir_ok(path, split):
        images, labels = load_idx_dataset(path, split)
        return ImageData(path.name, str(path), fields={"image": _grey_as(resize_uint8(images, resolution), channels)},
                         labels=labels, classes=tuple(str(i) for i in range(int(labels.max()) + 1)), budget=budget)
    index = index_folder(path, channels, paired, split)
    if paired:
        index = dataclasses.replace(index, direction=direction)
    report = {"source": str(path), "found": len(index.files) + len(index.skipped), "loaded": len(index.files),
              "skipped": len(index.skipped), "skipped_files": list(index.skipped)}
    labels = torch.tensor(index.labels, dtype=torch.int64) if index.labels is not None else None
    common = dict(labels=labels, classes=index.classes, report=report, budget=budget)
    if stream not in ("auto", "always", "never"):
        raise GanforgeError(f"data.stream must be auto, always or never, got {stream!r}")
    if stream == "always" or (stream == "auto" and index.nbytes(resolution) > budget):
        index = _keep_decodable(index)
        labels = torch.tensor(index.labels, dtype=torch.int64) if index.labels is not None else None
        report.update(loaded=len(index.files), skipped=len(index.skipped), skipped_files=index.skipped)
        common.update(labels=labels)
        return ImageData(path.name, str(path), index=index, resolution=resolution, **common)
    fields: dict[str, list] = {}
    bad = []
    for i in range(len(index.files)):
        try:
            for k, a in read_item(index, i, resolution).items():
                fields.setdefault(k, []).append(a)
        except _read_errors() as e:  # passed the header check, failed to decode: still not a crash
            bad.append(i)
            report["skipped_files"].append(f"{index.files[i]} ({type(e).__name__})")
            warnings.warn(f"skipped unreadable {index.files[i]} ({type(e).__name__})", stacklevel=2)
    if bad:
        dropped = set(bad)
        keep = [i for i in range(len(index.files)) if i not in dropped]
        if not keep:
            raise GanforgeError(f"none of the image files in {path} could be read")
        common["labels"] = labels[keep] if labels is not None else None
        report.update(loaded=len(keep), skipped=report["skipped"] + len(bad))
    tensors = {k: torch.from_numpy(np.stack(v)).permute(0, 3, 1, 2).contiguous() for k, v in fields.items()}
    return ImageData(path.name, str(path), fields=tensors, **common)


EMOJI_INSTALL = "apt-get install fonts-noto-color-emoji unicode-data"


def emoji_found() -> str | None:
    """Where the emoji come from on this machine (the font, rendered on first use), or None."""
    from .emoji import find_emoji_test, find_font

    try:
        return f"{find_font()} (rendered on first use)" if find_emoji_test() else None
    except GanforgeError:
        return None


def data_status() -> list[dict]:
    """What `ganforge data list` prints: each named dataset and where it was found (nothing downloaded)."""
    rows = []
    for name, ds in DATASETS.items():
        try:
            where = str(locate(name, "train", download=False))
        except GanforgeError:
            where = None
        rows.append({"name": name, "found": where, "classes": len(ds.classes),
                     "install": f"apt-get install {ds.debian_package}" if ds.debian_package else "torchvision download"})
    rows.append({"name": "emoji", "found": emoji_found(), "classes": 9, "install": EMOJI_INSTALL})
    from .paired import paired_status

    return rows + paired_status()


def prepare(name: str) -> Path:
    """Find `name`, downloading it into the cache when it is nowhere on this machine."""
    if name in RENDERED:
        return rendered_folder(name, 64)
    if name in _paired_sets():
        from .paired import prepare_paired

        return prepare_paired(name)
    if name not in DATASETS:
        raise GanforgeError(f"unknown dataset {name!r}; known: {', '.join(_known_names())} (or a folder path)")
    return locate(name, "train", download=True)
