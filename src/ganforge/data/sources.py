"""Where images come from: named datasets (IDX files), folders of images.

Named datasets are looked up in order (DESIGN.md): an explicit path, the user cache (`$GANFORGE_DATA`,
default `~/.cache/ganforge`), system locations (Debian's `/usr/share/datasets/...`), then torchvision's
download into the cache. When nothing is found, the error lists every place tried.
"""
from __future__ import annotations

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
    return all(_find_idx(folder, f) for f in IDX_FILES[split])


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
    """The folder that holds `name`'s IDX files, searched in DESIGN.md's order; downloads as a last resort."""
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


def load_folder(path: Path, resolution: int, channels: int | None = None) -> tuple[torch.Tensor, dict]:
    """Every image below `path` (recursively) as uint8 [N, C, R, R]. Unreadable files are skipped and
    reported. `channels`: 1, 3, or None to pick 1 when every image is grey and 3 otherwise."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise GanforgeError(f"{path} is not a folder of images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise GanforgeError(f"no images in {path} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    arrays, bad = [], []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                # resize at once: a folder of large photos must not sit in memory at full size
                arrays.append(_square_resize(_to_array(img, channels), resolution))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            bad.append(f"{f.name} ({type(e).__name__})")
    if not arrays:
        raise GanforgeError(f"none of the {len(files)} image files in {path} could be read: {', '.join(bad[:5])}")
    if channels is None:
        channels = 1 if all(a.shape[2] == 1 for a in arrays) else 3
    out = np.empty((len(arrays), resolution, resolution, channels), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = np.repeat(a, channels, axis=2) if a.shape[2] != channels else a
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable file(s) of {len(files)} in {path}: "
                      f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}", stacklevel=2)
    report = {"source": str(path), "found": len(files), "loaded": len(arrays), "skipped": len(bad),
              "skipped_files": bad}
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), report


# ---------------------------------------------------------------------------------------------- images

def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a uint8 [N, C, H, W] batch of square images. 28x28 digits and clothes are first padded to 32
    (background, as DCGAN and most MNIST GANs feed them), so every resolution sees the same framing."""
    n, c, h, w = images.shape
    if h == resolution and w == resolution:
        return images
    if (h, w) == (28, 28):
        images = F.pad(images, (2, 2, 2, 2))  # uint8 zero = black background
        if resolution == 32:
            return images
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", antialias=True,
                          align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float in [-1, 1], the range every model here is fed."""
    return images.float().mul_(2 / 255).sub_(1)


@dataclass
class ImageData:
    """A dataset in memory: uint8 images [N, C, R, R] (labels where the source has them)."""
    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    source: str
    classes: tuple[str, ...] = ()
    report: dict | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[2]

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 rows -> float [N, C, R, R] in [-1, 1]."""
        return to_unit_range(self.images[index])


def _grey_as(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).contiguous() if channels == 3 else images


def load_data(data: str, resolution: int, split: str = "train", channels: int | None = None) -> ImageData:
    """`data` is a dataset name (see DATASETS) or a path: a folder of images, or a folder of IDX files."""
    if data in DATASETS:
        ds = DATASETS[data]
        folder = locate(data, split)
        images, labels = load_idx_dataset(folder, split)
        return ImageData(_grey_as(resize_uint8(images, resolution), channels), labels, data, str(folder), ds.classes)
    path = Path(data).expanduser()
    if not path.exists():
        raise GanforgeError(f"--data {data!r} is neither a known dataset ({', '.join(DATASETS)}) nor an existing "
                            f"path")
    if path.is_dir() and _idx_dir_ok(path, split):
        images, labels = load_idx_dataset(path, split)
        return ImageData(_grey_as(resize_uint8(images, resolution), channels), labels, path.name, str(path))
    images, report = load_folder(path, resolution, channels)
    return ImageData(images, None, path.name, str(path), report=report)


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
    return rows


def prepare(name: str) -> Path:
    """Find `name`, downloading it into the cache when it is nowhere on this machine."""
    if name not in DATASETS:
        raise GanforgeError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or a folder path)")
    return locate(name, "train", download=True)
