"""Domain classifiers for the small datasets: feature extractors that mean something on their images.

Inception features of 28x28 grey clothes upscaled to 299 say little; a small CNN trained on the dataset
itself (as in the FID literature's MNIST/Fashion-MNIST practice) gives features and class predictions that
do. Trained by scripts/train_feature_extractors.py (seeded), shipped in ganforge/metrics/weights/:
Fashion-MNIST (1 channel, 10 classes) and emoji (3 channels, 9 Unicode groups).

Input: [N, C, 32, 32] in [-1, 1], i.e. how the data is fed to the models (28x28 padded to 32; other sizes are
resized with antialiasing). A weights file says its shape in its metadata ("channels", "num_classes"); a file
without them (the Fashion-MNIST one shipped before they existed) is 1 channel, 10 classes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).parent / "weights"


class DomainClassifier(nn.Module):
    feature_dim = 128

    def __init__(self, channels: int = 1, classes: int = 10):
        super().__init__()
        self.channels, self.num_classes = channels, classes
        self.class_names: tuple[str, ...] = ()

        def block(c_in, c_out):
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
                nn.MaxPool2d(2))

        self.body = nn.Sequential(block(channels, 16), block(16, 32), block(32, 64))  # 32 -> 4
        self.features = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 16, self.feature_dim),
                                      nn.BatchNorm1d(self.feature_dim), nn.ReLU(True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] -> features [N, 128] (the penultimate layer). Colour images are averaged
        to grey for a grey classifier, grey ones repeated for a colour one."""
        if x.shape[1] != self.channels:
            if x.shape[1] == 3 and self.channels == 1:
                x = x.mean(1, keepdim=True)
            elif x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            else:
                raise ValueError(f"a {self.channels}-channel classifier cannot read {x.shape[1]}-channel images")
        if x.shape[-2:] == (28, 28):  # the datasets' own size: pad with background, as the data is fed
            x = F.pad(x, (2, 2, 2, 2), value=-1.0)
        elif x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return self.features(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def weights_path(dataset: str) -> Path:
    """Shipped weights, unless $GANFORGE_CLASSIFIER_DIR points at a folder of your own (e.g. MNIST's, trained
    on a machine that has MNIST)."""
    import os

    folder = Path(os.environ.get("GANFORGE_CLASSIFIER_DIR") or WEIGHTS)
    return folder / f"{dataset}-classifier.safetensors"


def shape_metadata(channels: int, classes: int, class_names=()) -> dict[str, str]:
    """What a weights file must say for load_classifier to build the right network."""
    meta = {"channels": str(channels), "num_classes": str(classes)}
    if class_names:
        meta["class_names"] = json.dumps(list(class_names))
    return meta


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def load_classifier(dataset: str) -> DomainClassifier:
    from safetensors.torch import load_file

    from ..registry import GanforgeError

    path = weights_path(dataset)
    if not path.is_file():
        raise GanforgeError(f"no domain classifier for {dataset!r} at {path}; train it with "
                            f"scripts/train_feature_extractors.py --dataset {dataset}")
    meta = read_metadata(path)
    try:
        channels, classes = int(meta.get("channels", 1)), int(meta.get("num_classes", 10))
    except ValueError:
        raise GanforgeError(f"{path}: bad channels/num_classes metadata {meta}") from None
    with torch.random.fork_rng(devices=[]):  # its random init must not move a training run's RNG
        net = DomainClassifier(channels, classes)
    try:
        net.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise GanforgeError(f"{path} does not fit a {channels}-channel, {classes}-class domain classifier "
                            f"({str(e).splitlines()[0]}); retrain it with scripts/train_feature_extractors.py "
                            f"--dataset {dataset}") from None
    if "class_names" in meta:
        net.class_names = tuple(json.loads(meta["class_names"]))
    return net.eval().requires_grad_(False)
