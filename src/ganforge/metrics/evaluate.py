"""Evaluation: FID, KID, IS and precision/recall through torch-fidelity, on any two image sets.

An image set is uint8 [N, C, H, W]: samples of a model, a named dataset (its test split by default), a folder
of images, or an .npz array such as `ganforge sample --format npz` writes. Every result names its feature
extractor, its reference set and both sample counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import GanforgeError
from .extractors import DOMAIN, INCEPTION, default_extractor, inception_weights, missing_inception_message, register

METRICS = ("fid", "kid", "is", "pr")


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, C, H, W]
    name: str             # what it is, for the report
    dataset: str | None = None  # a named dataset it belongs to (picks the default extractor)
    cache_key: str | None = None  # stable identity for cached reference statistics

    def __len__(self) -> int:
        return self.images.shape[0]


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


def to_uint8(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    """An array of images in any common layout and range -> uint8 [N, C, H, W].

    uint8 is taken as 0..255; floats with negative values as [-1, 1], other floats as [0, 1]; NHWC is
    recognised by a last axis of 1, 3 or 4 (alpha is dropped), NCHW by a second axis of 1 or 3.
    """
    t = torch.as_tensor(np.asarray(x))
    if t.ndim == 3:  # [N, H, W] grey
        t = t[:, None]
    if t.ndim != 4:
        raise GanforgeError(f"{what}: expected an array of images [N, C, H, W] or [N, H, W, C], got shape "
                            f"{list(t.shape)}")
    if t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    if t.shape[1] == 4:
        t = t[:, :3]
    if t.shape[1] not in (1, 3):
        raise GanforgeError(f"{what}: cannot tell the channel axis of shape {list(t.shape)} (want 1 or 3 channels)")
    if t.dtype == torch.uint8:
        return t.contiguous()
    if not t.is_floating_point():
        raise GanforgeError(f"{what}: images must be uint8 or float, got {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise GanforgeError(f"{what}: the images contain NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1.001 or hi > 1.001:
        raise GanforgeError(f"{what}: float images must lie in [-1, 1] or [0, 1], found [{lo:.3g}, {hi:.3g}]")
    if lo < 0:
        t = (t + 1) / 2
    return (t * 255).round().clamp(0, 255).to(torch.uint8).contiguous()


def fit_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bring uint8 images to `size`: 28x28 is padded to 32 with background as the datasets are fed; other
    sizes are resized (antialiased)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if (h, w) == (28, 28) and size >= 32:
        images = F.pad(images, (2, 2, 2, 2))
        if size == 32:
            return images
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        images = images[..., top: top + s, left: left + s]
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _folder_size(path: Path) -> int:
    """The side of the first readable image: folders are loaded at their own size, so 28x28 PNGs get padded
    like the data rather than stretched (fit_size does the rest)."""
    from PIL import Image

    from ..data.sources import IMAGE_EXTENSIONS

    for p in sorted(path.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            try:
                with Image.open(p) as im:
                    return min(im.size)
            except Exception:
                continue
    return 32


def load_image_set(source: str | Path, n: int | None = None, split: str = "test", resolution: int | None = None,
                   seed: int = 0, channels: int | None = None) -> ImageSet:
    """A named dataset (its `split`), a folder of IDX files or of images, or an .npz file of one image array.
    `resolution` only matters for folders of mixed sizes (default: the first image's size)."""
    from ..data.sources import DATASETS, RENDERED, _idx_dir_ok, load_data, load_folder

    source = str(source)
    path = Path(source).expanduser()
    if source in RENDERED:  # no test split: its (only) images, as the run trained on them
        images = load_data(source, resolution or 32, split="train", channels=channels, stream="never").images
        # the named dataset picks its domain classifier (emoji-classifier); a folder of the same images does not
        name, key, dataset = f"{source} (all images)", f"{source}-r{resolution or 32}-c{images.shape[1]}", source
    elif source in DATASETS or (path.is_dir() and _idx_dir_ok(path, split)):
        data = load_data(source, 32, split, channels=channels)
        images = data.images
        label = source if source in DATASETS else str(path.resolve())
        name, key = f"{label} {split}", f"{label.replace('/', '_')}-{split}-c{images.shape[1]}"
        dataset = source if source in DATASETS else None
    else:
        if path.suffix == ".npz":
            if not path.is_file():
                raise GanforgeError(f"{path} does not exist")
            with np.load(path) as z:
                arrays = [k for k in z.files if z[k].ndim in (3, 4)]
                key_name = "images" if "images" in arrays else (arrays[0] if len(arrays) == 1 else None)
                if key_name is None:
                    raise GanforgeError(f"{path} must hold one array of images (or one named 'images'); found "
                                        f"{', '.join(z.files) or 'nothing'}")
                images = to_uint8(z[key_name], str(path))
            name, key, dataset = str(path), None, None
        elif path.is_dir():
            images, _ = load_folder(path, resolution or _folder_size(path), channels)
            name, key, dataset = str(path), None, None
        else:
            raise GanforgeError(f"{source!r} is neither a dataset name ({', '.join(DATASETS)}), a folder of images, "
                                f"nor an .npz file")
    if n is not None and n < len(images):
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
        images = images[idx]
        key = f"{key}-{n}-s{seed}" if key else None
    return ImageSet(images, name, dataset, key)


def _input_size(extractor: str) -> int:
    return 299 if extractor == INCEPTION else 32


def evaluate(fake: ImageSet, real: ImageSet, metrics=("fid", "kid", "pr"), extractor: str | None = None,
             kid_subset_size: int = 1000, inception_path: str | None = None, device: str | None = None) -> dict:
    """Compare two image sets; returns a JSON-ready dict of the metrics and what they were measured with."""
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise GanforgeError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    extractor = extractor or default_extractor(real.dataset or fake.dataset)
    if extractor not in (INCEPTION, *DOMAIN):
        raise GanforgeError(f"unknown extractor {extractor!r}; choose from {INCEPTION}, {', '.join(DOMAIN)}")
    if fake.images.shape[1] != real.images.shape[1]:
        raise GanforgeError(f"mismatched channel counts: {fake.name} has {fake.images.shape[1]}, {real.name} has "
                            f"{real.images.shape[1]}; compare grey with grey and colour with colour")
    binary = [m for m in metrics if m != "is"]
    if "kid" in metrics and kid_subset_size < 2:
        raise GanforgeError(f"KID needs subsets of at least 2 images, got --kid-subset-size {kid_subset_size}")
    if "is" in metrics and len(fake) < 10:
        raise GanforgeError(f"the Inception Score is averaged over 10 splits: {fake.name} has {len(fake)} images, "
                            f"it needs at least 10")
    need = max(2, kid_subset_size if "kid" in metrics else 2)
    for s in (fake, real) if binary else (fake,):
        if len(s) < need:
            raise GanforgeError(f"{s.name} has {len(s)} images; {'KID with subsets of ' + str(kid_subset_size) if 'kid' in metrics else 'the metrics'} "
                                f"need at least {need} (use more images, or --kid-subset-size)")
    if "pr" in metrics and min(len(fake), len(real)) <= 3:
        raise GanforgeError("precision/recall needs more than 3 images per set")
    size = _input_size(extractor)
    kwargs = {}
    if extractor == INCEPTION:
        kwargs["feature_extractor_weights_path"] = inception_weights(inception_path)
        fake_imgs, real_imgs = (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
                                for x in (fake.images, real.images))
        fake_imgs, real_imgs = (x if x.shape[-1] >= 32 else fit_size(x, 32) for x in (fake_imgs, real_imgs))
    else:
        fake_imgs, real_imgs = fit_size(fake.images, size), fit_size(real.images, size)
    register()
    import torch_fidelity

    from ..data.sources import cache_dir

    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    try:
        raw = torch_fidelity.calculate_metrics(
            input1=_Images(fake_imgs.contiguous()), input2=_Images(real_imgs.contiguous()) if binary else None,
            cuda=cuda, batch_size=200, fid="fid" in metrics, kid="kid" in metrics, isc="is" in metrics,
            prc="pr" in metrics, feature_extractor=extractor, kid_subset_size=kid_subset_size,
            cache=real.cache_key is not None, cache_root=str(cache_dir() / "fidelity"),
            input2_cache_name=(f"ganforge-{real.cache_key}-{extractor}-{size}-{_weights_tag(extractor, kwargs)}"
                               if real.cache_key else None),
            save_cpu_ram=True,  # no DataLoader worker processes: the images are already in memory
            verbose=False, **kwargs)
    except GanforgeError:
        raise
    except Exception as e:
        if extractor == INCEPTION and kwargs.get("feature_extractor_weights_path") is None:
            raise GanforgeError(missing_inception_message()) from None
        raise GanforgeError(f"torch-fidelity failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    out: dict = {}
    if "fid" in metrics:
        fid = raw["frechet_inception_distance"]
        # rounding can dip a hair below zero; a NaN must stay NaN (max(0.0, nan) is 0.0: a "perfect" score)
        out["fid"] = max(0.0, fid) if math.isfinite(fid) else fid
    if "kid" in metrics:
        out["kid"] = {"mean": raw["kernel_inception_distance_mean"], "std": raw["kernel_inception_distance_std"],
                      "subset_size": kid_subset_size}
    if "is" in metrics:
        out["is"] = {"mean": raw["inception_score_mean"], "std": raw["inception_score_std"]}
    if "pr" in metrics:
        out["precision"], out["recall"] = raw["precision"], raw["recall"]
    for k, v in _numbers(out):
        if not math.isfinite(v):
            raise GanforgeError(f"{k} came out {v}: the image sets are degenerate (constant images?)")
    out.update(extractor=extractor, reference=real.name if binary else None, n_real=len(real) if binary else 0,
               fake=fake.name, n_fake=len(fake))
    dim = 2048 if extractor == INCEPTION else 128
    if "fid" in metrics and min(len(fake), len(real)) <= dim:
        out["note"] = (f"FID from {min(len(fake), len(real))} images, no more than the {dim} feature dimensions: "
                       f"biased high and noisy; use thousands of images to compare runs")
    return out


def _weights_tag(extractor: str, kwargs: dict) -> str:
    """Identity of the extractor's weights, so cached statistics never outlive the weights they came from."""
    import os

    if extractor == INCEPTION:
        path = kwargs.get("feature_extractor_weights_path")
    else:
        from .classifier import weights_path

        path = weights_path(DOMAIN[extractor])
    if not path or not os.path.exists(path):
        return "default"
    st = os.stat(path)
    return f"w{st.st_size}-{int(st.st_mtime)}"


def _numbers(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _numbers(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            yield f"{prefix}{k}", v
