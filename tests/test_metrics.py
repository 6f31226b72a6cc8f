"""Evaluation: the metrics' known properties, the offline extractors, and clear errors on bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ganforge.metrics.domain import frechet_distance
from ganforge.metrics.evaluate import ImageSet, evaluate, fit_size, load_image_set, to_uint8
from ganforge.registry import GanforgeError


def blobs(n: int, seed: int, size: int = 28, value: int = 220) -> torch.Tensor:
    """Bright squares on black at random places: a stand-in for clothes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        r, c = torch.randint(2, size - 14, (2,), generator=g).tolist()
        w = int(torch.randint(6, 12, (1,), generator=g))
        x[i, 0, r: r + w, c: c + w] = value
    return x


# ------------------------------------------------------------------------------------------ the maths

def test_fid_of_a_set_with_itself_is_zero():
    feats = torch.randn(500, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(frechet_distance(feats, feats)) < 1e-6


def test_fid_matches_the_closed_form_for_gaussians():
    # N(mu1, diag(s1^2)) vs N(mu2, diag(s2^2)): FID = |mu1 - mu2|^2 + sum (s1 - s2)^2
    g = torch.Generator().manual_seed(1)
    d, n = 8, 200_000
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(0, 1, d, dtype=torch.float64)
    s1, s2 = torch.ones(d, dtype=torch.float64), torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    a = mu1 + s1 * torch.randn(n, d, generator=g, dtype=torch.float64)
    b = mu2 + s2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    expected = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_kid_is_unbiased_on_equal_distributions():
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2000, 32, generator=g), torch.randn(2000, 32, generator=g)
    same = kid_features_to_metric(a, b, kid_subset_size=500, verbose=False)
    shifted = kid_features_to_metric(a, b + 0.5, kid_subset_size=500, verbose=False)
    mean, std = same["kernel_inception_distance_mean"], same["kernel_inception_distance_std"]
    assert abs(mean) < 3 * std / (100 ** 0.5) + 1e-4  # centred on 0 (an unbiased estimator), not above it
    assert shifted["kernel_inception_distance_mean"] > 50 * abs(mean)


# ------------------------------------------------------------------------------------------ through the extractors

def test_precision_recall_identical_high_disjoint_low():
    real = ImageSet(blobs(300, 0), "blobs", "fashion-mnist")
    same = evaluate(ImageSet(real.images.clone(), "copy"), real, ("pr", "fid"))
    assert same["precision"] > 0.95 and same["recall"] > 0.95 and same["fid"] < 1e-6
    stripes = torch.zeros(300, 1, 28, 28, dtype=torch.uint8)
    stripes[:, :, ::3] = 255  # horizontal lines: nothing like a blob
    apart = evaluate(ImageSet(stripes, "stripes"), real, ("pr", "fid"))
    assert apart["precision"] < 0.05 and apart["recall"] < 0.05
    assert apart["fid"] > 100 * max(same["fid"], 1e-6)
    assert apart["extractor"] == "fashion-mnist-classifier" and apart["n_real"] == 300 and apart["n_fake"] == 300


def test_domain_extractor_is_registered_with_torch_fidelity():
    from ganforge.metrics.extractors import register

    register()
    register()  # idempotent
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert {"fashion-mnist-classifier", "mnist-classifier"} <= set(FEATURE_EXTRACTORS_REGISTRY)


def test_inception_weights_missing_offline_says_where_to_put_them(tmp_path, monkeypatch, isolated_data):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    real = ImageSet(blobs(20, 0), "blobs")
    with pytest.raises(GanforgeError) as e:
        evaluate(ImageSet(blobs(20, 1), "b"), real, ("fid",), extractor="inception-v3-compat")
    msg = str(e.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and str(isolated_data / "weights") in msg


def test_inception_weights_that_are_not_plain_tensors_are_refused(tmp_path):
    import pickle

    from ganforge.metrics.extractors import inception_weights

    bad = tmp_path / "w.pth"
    bad.write_bytes(pickle.dumps(object()))
    with pytest.raises(GanforgeError, match="refusing"):
        inception_weights(bad)


# ------------------------------------------------------------------------------------------ inputs

@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
@pytest.mark.parametrize("rng", ["uint8", "pm1", "01"])
def test_npz_layouts_and_ranges_load_the_same(layout, rng, tmp_path):
    base = blobs(8, 3)  # uint8 [8, 1, 28, 28]
    arr = base.numpy()
    if rng == "pm1":
        arr = arr.astype(np.float32) / 127.5 - 1
    elif rng == "01":
        arr = arr.astype(np.float32) / 255
    if layout == "nhwc":
        arr = arr.transpose(0, 2, 3, 1)
    elif layout == "nhw":
        arr = arr[:, 0]
    np.savez(tmp_path / "x.npz", images=arr)
    got = load_image_set(tmp_path / "x.npz").images
    assert got.shape == (8, 1, 28, 28) and got.dtype == torch.uint8
    assert (got.int() - base.int()).abs().max() <= 1


def test_28px_is_padded_like_the_data_other_sizes_resized():
    x = blobs(2, 0)
    padded = fit_size(x, 32)
    assert padded.shape[-1] == 32 and padded[..., :2, :].max() == 0 and torch.equal(padded[..., 2:30, 2:30], x)
    assert fit_size(torch.full((2, 1, 64, 64), 200, dtype=torch.uint8), 32).shape[-1] == 32


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanforgeError, match="no images"):
        load_image_set(tmp_path / "empty")
    with pytest.raises(GanforgeError, match="mismatched channel counts"):
        evaluate(ImageSet(blobs(50, 0).expand(-1, 3, -1, -1), "rgb"), ImageSet(blobs(50, 1), "grey"), ("fid",),
                 extractor="fashion-mnist-classifier")
    with pytest.raises(GanforgeError, match="KID with subsets of 1000"):
        evaluate(ImageSet(blobs(50, 0), "few"), ImageSet(blobs(50, 1), "few2"), ("kid",),
                 extractor="fashion-mnist-classifier")
    with pytest.raises(GanforgeError, match="NaN"):
        to_uint8(np.full((2, 1, 8, 8), np.nan, np.float32), "x")
    with pytest.raises(GanforgeError, match=r"\[-1, 1\] or \[0, 1\]"):
        to_uint8(np.full((2, 1, 8, 8), 7.0, np.float32), "x")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 8, 8)), b=np.zeros((2, 8, 8)))
    with pytest.raises(GanforgeError, match="one array"):
        load_image_set(tmp_path / "two.npz")
    with pytest.raises(GanforgeError, match="unknown metric"):
        evaluate(ImageSet(blobs(5, 0), "a"), ImageSet(blobs(5, 1), "b"), ("fidd",))
    # constant images: the FID would be NaN; never printed as a result
    flat = ImageSet(torch.zeros(30, 1, 28, 28, dtype=torch.uint8), "flat")
    try:
        out = evaluate(flat, ImageSet(torch.zeros(30, 1, 28, 28, dtype=torch.uint8), "flat2"), ("fid",),
                       extractor="fashion-mnist-classifier")
        assert np.isfinite(out["fid"])
    except GanforgeError as e:
        assert "degenerate" in str(e) or "torch-fidelity" in str(e)


def test_cli_eval_compares_two_image_sets(fake_fashion, tmp_path, capsys):
    from ganforge.cli import main

    from conftest import write_idx  # noqa: F401  (fake_fashion installed the dataset)

    np.savez(tmp_path / "fake.npz", images=blobs(60, 5).numpy().transpose(0, 2, 3, 1))
    capsys.readouterr()
    rc = main(["eval", "--fake", str(tmp_path / "fake.npz"), "--real", "fashion-mnist", "--split", "train",
               "--metrics", "fid,kid,pr", "--kid-subset-size", "50", "--n", "60"])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(out)
    assert res["extractor"] == "fashion-mnist-classifier" and res["reference"] == "fashion-mnist train"
    assert res["n_fake"] == 60 and res["n_real"] == 60
    assert res["fid"] >= 0 and set(res["kid"]) == {"mean", "std", "subset_size"}
    assert 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1


def test_classifier_training_script_runs_on_generated_mnist(isolated_data, tmp_path, monkeypatch, capsys):
    """MNIST is not on every machine: the script that trains its classifier is tested on generated IDX files."""
    import importlib.util
    from pathlib import Path

    from conftest import write_idx

    write_idx(isolated_data / "mnist", n=64)
    write_idx(isolated_data / "mnist", n=32, split="test", seed=1)
    script = Path(__file__).resolve().parent.parent / "scripts" / "train_feature_extractors.py"
    spec = importlib.util.spec_from_file_location("tfe", script)
    tfe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tfe)
    tfe.main(["--dataset", "mnist", "--epochs", "1", "--batch-size", "16", "--out",
              str(tmp_path / "mnist-classifier.safetensors")])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= out["test_accuracy"] <= 1
    monkeypatch.setenv("GANFORGE_CLASSIFIER_DIR", str(tmp_path))
    res = evaluate(ImageSet(blobs(20, 0), "a"), ImageSet(blobs(20, 1), "b"), ("fid",), extractor="mnist-classifier")
    assert res["extractor"] == "mnist-classifier" and res["fid"] >= 0
    monkeypatch.setenv("GANFORGE_CLASSIFIER_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(GanforgeError, match="train_feature_extractors.py"):
        evaluate(ImageSet(blobs(20, 0), "a"), ImageSet(blobs(20, 1), "b"), ("fid",), extractor="mnist-classifier")


def test_inception_score_on_the_domain_classifier():
    varied = ImageSet(blobs(200, 0), "blobs", "fashion-mnist")
    res = evaluate(varied, varied, ("is",))
    assert res["is"]["mean"] >= 1.0 and res["is"]["std"] >= 0 and res["n_real"] == 0


def test_reference_statistics_are_cached_per_dataset_split_and_extractor(fake_fashion, isolated_data):
    real = load_image_set("fashion-mnist", split="train")
    assert real.cache_key.startswith("fashion-mnist-train")
    first = evaluate(ImageSet(blobs(96, 7), "b", "fashion-mnist"), real, ("fid",))
    cached = [p.name for p in (isolated_data / "fidelity").rglob("*") if p.is_file()]
    assert any(n.startswith("ganforge-fashion-mnist-train") and "fashion-mnist-classifier" in n for n in cached), cached
    again = evaluate(ImageSet(blobs(96, 7), "b", "fashion-mnist"), real, ("fid",))
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-9)


def test_a_folder_of_28px_images_is_padded_like_the_data_not_stretched(tmp_path):
    from PIL import Image

    imgs = blobs(40, 9)
    for i, x in enumerate(imgs):
        Image.fromarray(x[0].numpy(), "L").save(tmp_path / f"{i:03d}.png")
    folder = load_image_set(tmp_path)
    assert folder.images.shape == (40, 1, 28, 28)
    res = evaluate(ImageSet(folder.images, "folder"), ImageSet(imgs, "same images"), ("fid", "pr"),
                   extractor="fashion-mnist-classifier")
    assert res["fid"] < 1e-6 and res["precision"] == 1.0 and "note" in res  # 40 images: flagged as noisy


def test_metrics_with_too_few_images_say_why():
    few = ImageSet(blobs(8, 0), "eight")
    with pytest.raises(GanforgeError, match="10 splits"):
        evaluate(few, few, ("is",), extractor="fashion-mnist-classifier")
    with pytest.raises(GanforgeError, match="at least 2"):
        evaluate(few, few, ("kid",), extractor="fashion-mnist-classifier", kid_subset_size=1)
