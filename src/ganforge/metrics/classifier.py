"""Domain classifiers for the small datasets: feature extractors that mean something on 28x28 images.

Inception features of 28x28 grey clothes upscaled to 299 say little; a small CNN trained on the dataset
itself (as in the FID literature's MNIST/Fashion-MNIST practice) gives features and class predictions that
do. Trained by scripts/train_feature_extractors.py (seeded), shipped in ganforge/metrics/weights/.

Input: [N, 1, 32, 32] in [-1, 1], i.e. exactly how the data is fed to the models (28x28 padded to 32).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).parent / "weights"


class DomainClassifier(nn.Module):
    feature_dim = 128

    def __init__(self, channels: int = 1, classes: int = 10):
        super().__init__()

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
        """[N, C, 32, 32] in [-1, 1] -> features [N, 128] (the penultimate layer)."""
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


def load_classifier(dataset: str) -> DomainClassifier:
    from safetensors.torch import load_file

    from ..registry import GanforgeError

    path = weights_path(dataset)
    if not path.is_file():
        raise GanforgeError(f"no domain classifier for {dataset!r} at {path}; train it with "
                            f"scripts/train_feature_extractors.py --dataset {dataset}")
    with torch.random.fork_rng(devices=[]):  # its random init must not move a training run's RNG
        net = DomainClassifier()
    net.load_state_dict(load_file(str(path)))
    return net.eval().requires_grad_(False)
