"""Measurements in a domain classifier's feature space (Fashion-MNIST, MNIST, emoji): FID through torch-fidelity's
statistics functions, and the class histogram of samples (the article's "same image only" failure shows
up as few classes covered)."""
from __future__ import annotations

import math

import torch

from .classifier import load_classifier


@torch.no_grad()
def classify(images: torch.Tensor, dataset: str, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """images [N, C, H, W] in [-1, 1] -> (features [N, 128] float64, logits [N, classes]). Channels are
    matched to the classifier's as the extractor matches them (colour averaged to grey, grey repeated)."""
    net = load_classifier(dataset)
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f = net.embed(chunk.float())
        feats.append(f.double())
        logits.append(net.head(f))
    return torch.cat(feats), torch.cat(logits)


def frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """FID between two feature sets, computed by torch-fidelity (not by hand-written maths)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    s1 = fid_features_to_statistics(real_features)
    s2 = fid_features_to_statistics(fake_features)
    return float(fid_statistics_to_metric(s1, s2, False)["frechet_inception_distance"])


def class_histogram(logits: torch.Tensor) -> dict:
    """Predicted-class histogram of samples: entropy (nats; max_entropy = log(classes) is uniform, 2.30 for
    10 classes, 2.20 for emoji's 9), classes covered (with at least 1% of samples) and the largest class
    share."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double()
    p = counts / counts.sum()
    entropy = max(0.0, float(-(p[p > 0] * p[p > 0].log()).sum()))  # one class: 0.0, not -0.0
    return {"entropy": round(entropy, 3), "max_entropy": round(math.log(logits.shape[1]), 3),
            "classes_covered": int((p >= 0.01).sum()), "largest_class_share": round(float(p.max()), 3)}


@torch.no_grad()
def class_accuracy(gen, dataset: str, n_per_class: int = 1000, seed: int = 0) -> dict:
    """How well a class-conditional model draws the class it is asked for: `n_per_class` samples of every
    class, each judged by the domain classifier of `dataset`. The model's classes are the classifier's, or a
    subset of them by name (a folder of Fashion-MNIST classes, say). Returns the mean of the per-class
    accuracies, each class's, and the confusion matrix (rows: the class asked for, columns: the class the
    classifier sees, all the classifier's classes), as counts."""
    from ..data.sources import DATASETS
    from ..registry import GanforgeError

    if not gen.conditional:
        raise GanforgeError(f"class accuracy needs a class-conditional model; this {gen.cfg.model} is unconditional")
    names = DATASETS[dataset].classes if dataset in DATASETS else ()
    k = gen.num_classes
    if names and set(gen.classes) <= set(names):
        target = [names.index(c) for c in gen.classes]
    elif k == (len(names) or load_classifier(dataset).head[-1].out_features):
        target = list(range(k))  # the same classes in the same order (emoji: its groups)
    else:
        raise GanforgeError(f"the {dataset} classifier does not know the model's {k} classes "
                            f"({', '.join(gen.classes)}): class accuracy needs its classes or a subset by name")
    rows = []
    for c in range(k):
        _, logits = classify(gen.sample(n_per_class, seed=seed + c, labels=c), dataset)
        rows.append(torch.bincount(logits.argmax(1), minlength=logits.shape[1]))
    confusion = torch.stack(rows)
    per_class = [float(confusion[c, target[c]]) / n_per_class for c in range(k)]
    return {"mean": round(sum(per_class) / k, 4), "n_per_class": n_per_class, "classifier": dataset,
            "per_class": {name: round(a, 4) for name, a in zip(gen.classes, per_class)},
            "confusion": confusion.tolist(), "classes": list(gen.classes),
            "classifier_classes": list(names) or list(gen.classes)}
