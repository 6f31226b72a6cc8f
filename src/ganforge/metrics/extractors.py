"""Feature extractors, registered with torch-fidelity (the engine of every metric here).

- `inception-v3-compat`: torch-fidelity's own Inception-v3 (the TF-FID-compatible one). Its weights are looked
  up locally (a path, `$GANFORGE_INCEPTION_WEIGHTS`, the ganforge cache, torch's hub cache) and downloaded only
  where downloads are allowed; when they are missing offline, the error says exactly where to put the file.
- `fashion-mnist-classifier`, `mnist-classifier`, `emoji-classifier`: the small domain CNNs of
  metrics/classifier.py, shipped as safetensors in the package (MNIST's is trained where MNIST is): they work
  offline and mean something on 28x28 grey images and on 32-64px colour emoji. A dataset gets its classifier
  by name only: a folder of images (even one made from emoji) is measured with Inception unless
  --extractor says otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..registry import GanforgeError

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
DOMAIN = {"fashion-mnist-classifier": "fashion-mnist", "mnist-classifier": "mnist", "emoji-classifier": "emoji"}
EXTRACTORS = (INCEPTION, *DOMAIN)


# paired datasets whose targets are a domain that has a classifier (their outputs are measured there)
TARGET_DOMAIN = {"edges2fashion": "fashion-mnist", "gray2emoji": "emoji"}


def require_extractor(name: str | None, dataset: str | None) -> str:
    """The extractor to use (`name`, or the data's default), checked to be at hand: a clear error now, not
    after an hour of training."""
    from ..registry import GanforgeError
    from .classifier import load_classifier

    name = name or default_extractor(dataset)
    if name not in EXTRACTORS:
        raise GanforgeError(f"unknown feature extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    if name == INCEPTION:
        inception_weights()
    else:
        load_classifier(DOMAIN[name])
    return name


def default_extractor(dataset: str | None) -> str:
    """The domain classifier for the datasets that have one (a paired set's: its targets'); Inception for
    everything else."""
    dataset = TARGET_DOMAIN.get(dataset, dataset)
    for name, ds in DOMAIN.items():
        if ds == dataset:
            return name
    return INCEPTION


def _domain_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    from .classifier import load_classifier

    class DomainFeatureExtractor(FeatureExtractorBase):
        """uint8 [N, C, H, W] -> ('features' [N, 128], 'logits' [N, classes]) of a domain classifier (grey
        images are repeated for a colour classifier, colour ones averaged for a grey one)."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.net = load_classifier(DOMAIN[name])

        @staticmethod
        def get_provided_features_list():
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "logits" if metric == "isc" else "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

        def forward(self, x):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise GanforgeError(f"the {self.name} extractor takes uint8 [N, C, H, W] images, got {x.dtype} "
                                    f"{list(x.shape)}")
            x = x.float() / 127.5 - 1
            with torch.no_grad():
                feats = self.net.embed(x)
                out = {"features": feats.double(), "logits": self.net.head(feats).double()}
            return tuple(out[k] for k in self.features_list)

    return DomainFeatureExtractor


_registered = False


def register() -> None:
    """Register our extractors with torch-fidelity (once per process)."""
    global _registered
    if _registered:
        return
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    cls = _domain_class()
    for name in DOMAIN:
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)
    _registered = True


def inception_weights(path: str | Path | None = None) -> str | None:
    """The local Inception weights file, checked to load without running code; None where none is on this
    machine and downloads are allowed (torch-fidelity then fetches it into torch's hub cache)."""
    from ..data.sources import cache_dir

    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    ours = cache_dir() / "weights" / INCEPTION_FILE
    env = os.environ.get("GANFORGE_INCEPTION_WEIGHTS")
    candidates = [Path(p) for p in (path, env) if p] + [ours, hub]
    if path and not Path(path).is_file():
        raise GanforgeError(f"Inception weights file {path} does not exist")
    for c in candidates:
        if c.is_file():
            try:  # torch-fidelity itself unpickles the file; make sure it is plain tensors first
                torch.load(c, map_location="cpu", weights_only=True)
            except Exception as e:
                raise GanforgeError(f"{c} is not a plain Inception state dict ({type(e).__name__}); refusing to "
                                    f"load it") from None
            return str(c)
    if os.environ.get("GANFORGE_NO_DOWNLOAD", "") not in ("", "0"):
        raise GanforgeError(
            f"the {INCEPTION} weights ({INCEPTION_FILE}) are not on this machine and downloads are off. Put the "
            f"file at {ours} (or {hub}, or pass its path with --inception-weights), or use a domain extractor: "
            f"--extractor {' / '.join(DOMAIN)}")
    return None


def missing_inception_message() -> str:
    from ..data.sources import cache_dir

    return (f"the {INCEPTION} weights could not be downloaded (no internet?). Put {INCEPTION_FILE} at "
            f"{cache_dir() / 'weights' / INCEPTION_FILE} or pass its path with --inception-weights")
