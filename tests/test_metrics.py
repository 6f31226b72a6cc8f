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


def stripes(n: int, size: int = 28) -> torch.Tensor:
    """Horizontal lines: nothing like a blob, to the eye or to the classifier."""
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, ::3] = 255
    return x


def shapes(n: int) -> torch.Tensor:
    """Ten different grey shapes in turn (bars, grids, boxes, a T): the classifier sees several classes."""
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        k, im = i % 10, x[i, 0]
        if k == 0:
            im[::3] = 255
        elif k == 1:
            im[:, ::3] = 255
        elif k == 2:
            im[4:24, 4:24] = 220
        elif k == 3:
            im[2:26, 10:18] = 220
        elif k == 4:
            im[20:26, 2:26] = 220
        elif k == 5:
            im[:] = 255
        elif k == 6:
            im[2:26, 2:26] = 120
        elif k == 7:
            im[::2, ::2] = 255
        elif k == 8:
            im[4:24, 2:8] = im[4:24, 20:26] = 255
        else:
            im[5:12, 5:23] = im[12:26, 9:19] = 200
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


def test_kid_of_a_set_with_itself_is_near_zero_and_of_distinct_sets_large():
    real = ImageSet(blobs(300, 0), "blobs", "fashion-mnist")
    same = evaluate(ImageSet(real.images.clone(), "copy"), real, ("kid",), kid_subset_size=100)["kid"]
    apart = evaluate(ImageSet(stripes(300), "stripes"), real, ("kid",), kid_subset_size=100)["kid"]
    assert same["subset_size"] == 100 and same["std"] > 0  # subsets are drawn: some spread
    assert abs(same["mean"]) < 0.02  # an unbiased estimator: centred on 0, not above it
    assert apart["mean"] > 1.0 and apart["mean"] > 50 * abs(same["mean"])


# ------------------------------------------------------------------------------------------ through the extractors

def test_precision_recall_identical_high_disjoint_low():
    real = ImageSet(blobs(300, 0), "blobs", "fashion-mnist")
    same = evaluate(ImageSet(real.images.clone(), "copy"), real, ("pr", "fid"))
    assert same["precision"] > 0.95 and same["recall"] > 0.95 and same["fid"] < 1e-6
    apart = evaluate(ImageSet(stripes(300), "stripes"), real, ("pr", "fid"))
    assert apart["precision"] < 0.05 and apart["recall"] < 0.05
    assert apart["fid"] > 10  # about 70; identical sets are at 0
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
    # constant images (zero covariance) still give plain numbers: identical sets 0, black vs white far apart
    black = ImageSet(torch.zeros(30, 1, 28, 28, dtype=torch.uint8), "black")
    white = ImageSet(torch.full((30, 1, 28, 28), 255, dtype=torch.uint8), "white")
    assert evaluate(black, black, ("fid",), extractor="fashion-mnist-classifier")["fid"] == 0.0
    assert evaluate(black, white, ("fid",), extractor="fashion-mnist-classifier")["fid"] > 10


def _torch_fidelity_returning(monkeypatch, **raw):
    import torch_fidelity

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", lambda **kwargs: raw)


def test_a_nan_from_torch_fidelity_is_an_error_not_a_result(monkeypatch):
    _torch_fidelity_returning(monkeypatch, kernel_inception_distance_mean=float("nan"),
                              kernel_inception_distance_std=float("nan"))
    with pytest.raises(GanforgeError, match="degenerate"):
        evaluate(ImageSet(blobs(20, 0), "a"), ImageSet(blobs(20, 1), "b"), ("kid",),
                 extractor="fashion-mnist-classifier", kid_subset_size=10)


def test_a_nan_fid_is_an_error_not_a_perfect_score(monkeypatch):
    _torch_fidelity_returning(monkeypatch, frechet_inception_distance=float("nan"))
    with pytest.raises(GanforgeError, match="degenerate"):
        evaluate(ImageSet(blobs(20, 0), "a"), ImageSet(blobs(20, 1), "b"), ("fid",),
                 extractor="fashion-mnist-classifier")


def test_cli_eval_compares_two_image_sets(fake_fashion, tmp_path, capsys):
    from ganforge.cli import main

    # the installed dataset's own 96 images as an .npz ([N, H, W, C], as `ganforge sample` writes), and stripes
    data = load_image_set("fashion-mnist", split="train").images
    assert len(data) == 96
    np.savez(tmp_path / "same.npz", images=data.numpy().transpose(0, 2, 3, 1))
    np.savez(tmp_path / "stripes.npz", images=stripes(96).numpy().transpose(0, 2, 3, 1))

    def cli_eval(fake: str, n: int) -> dict:
        capsys.readouterr()
        rc = main(["eval", "--fake", str(tmp_path / fake), "--real", "fashion-mnist", "--split", "train",
                   "--metrics", "fid,kid,pr", "--kid-subset-size", "50", "--n", str(n)])
        out = capsys.readouterr().out
        assert rc == 0, out
        return json.loads(out)

    same, apart = cli_eval("same.npz", 96), cli_eval("stripes.npz", 60)
    assert same["extractor"] == "fashion-mnist-classifier" and same["reference"] == "fashion-mnist train"
    assert apart["n_fake"] == 60 and apart["n_real"] == 60  # --n draws that many from each set
    assert set(same["kid"]) == {"mean", "std", "subset_size"} and same["kid"]["subset_size"] == 50
    # the data against itself: FID 0, every image covered both ways, KID centred on 0
    assert same["fid"] < 1e-6 and same["precision"] > 0.99 and same["recall"] > 0.99
    assert abs(same["kid"]["mean"]) < 0.05
    # stripes against the data: far apart on every metric
    assert apart["fid"] > 10 and apart["kid"]["mean"] > 0.5
    assert apart["precision"] < 0.05 and apart["recall"] < 0.05


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
    monkeypatch.setenv("GANFORGE_CLASSIFIER_DIR", str(tmp_path))
    # the accuracy printed is the saved classifier's on the test split
    from ganforge.data import load_data
    from ganforge.metrics.classifier import load_classifier

    test = load_data("mnist", 32, "test")
    with torch.no_grad():
        pred = load_classifier("mnist")(test.batch(torch.arange(len(test)))).argmax(1)
    assert out["test_accuracy"] == pytest.approx(float((pred == test.labels).float().mean()), abs=1e-4)
    # evaluation picks up the trained extractor, whose features tell blobs from stripes (if barely: one epoch)
    a = ImageSet(blobs(20, 0), "a")
    same = evaluate(ImageSet(a.images.clone(), "copy"), a, ("fid",), extractor="mnist-classifier")
    apart = evaluate(ImageSet(stripes(20), "stripes"), a, ("fid",), extractor="mnist-classifier")
    assert apart["extractor"] == "mnist-classifier"
    assert same["fid"] < 1e-9 and apart["fid"] > 1e-6
    monkeypatch.setenv("GANFORGE_CLASSIFIER_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(GanforgeError, match="train_feature_extractors.py"):
        evaluate(ImageSet(blobs(20, 0), "a"), ImageSet(blobs(20, 1), "b"), ("fid",), extractor="mnist-classifier")


def test_inception_score_on_the_domain_classifier():
    # one image repeated: every prediction the same, so the score is its minimum, exactly 1
    one = ImageSet(blobs(1, 0).expand(200, -1, -1, -1).clone(), "one image", "fashion-mnist")
    res = evaluate(one, one, ("is",))
    assert res["is"]["mean"] == pytest.approx(1.0, abs=1e-4) and res["is"]["std"] < 1e-4 and res["n_real"] == 0
    # ten different shapes are put in several classes: clearly above 1 (about 1.7)
    varied = ImageSet(shapes(200), "shapes", "fashion-mnist")
    assert evaluate(varied, varied, ("is",))["is"]["mean"] > 1.3


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


# ------------------------------------------------------------------------------------------ the emoji classifier

def _emoji_weights_meta() -> dict:
    from ganforge.metrics.classifier import WEIGHTS, read_metadata

    return read_metadata(WEIGHTS / "emoji-classifier.safetensors")


@pytest.fixture(scope="module")
def held_out_emoji(tmp_path_factory):
    """The first 5 held-out emoji of each group (the weights file lists them), rendered at 64px, the
    dataset's default size, through a small emoji-test.txt of just those: a second, not the full render."""
    from ganforge.data import emoji as E

    try:
        E.find_font()
    except GanforgeError as e:
        pytest.skip(f"Noto Color Emoji font not installed (apt-get install fonts-noto-color-emoji): {e}")
    by_group: dict[str, list[str]] = {}
    for key in json.loads(_emoji_weights_meta()["held_out_keys"]):
        group, codepoints = key.split("/")
        by_group.setdefault(group, []).append(codepoints)
    lines = []
    for group, cps in by_group.items():
        lines.append(f"# group: {group}")  # a slug is its own slug
        lines += [f"{' '.join(cps_.split('-')).upper()} ; fully-qualified # x" for cps_ in cps[:5]]
    tmp = tmp_path_factory.mktemp("emoji")
    (tmp / "emoji-test.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as m:
        m.setenv(E.EMOJI_TEST_ENV, str(tmp / "emoji-test.txt"))
        E.render_emoji_folder(tmp / "held-out", size=64)
    return tmp / "held-out"


def test_the_emoji_classifier_is_built_from_its_file_and_fashion_mnist_still_loads():
    from ganforge.metrics.classifier import load_classifier

    net = load_classifier("emoji")
    assert (net.channels, net.num_classes) == (3, 9)
    assert net.body[0][0].in_channels == 3 and net.head[-1].out_features == 9
    assert len(net.class_names) == 9 and "smileys-and-emotion" in net.class_names
    meta = _emoji_weights_meta()
    assert float(meta["test_accuracy"]) > 2 * float(meta["majority_baseline"])  # as measured when trained
    # the file shipped before shape metadata existed: 1 channel, 10 classes, as always
    fashion = load_classifier("fashion-mnist")
    assert (fashion.channels, fashion.num_classes) == (1, 10) and fashion.head[-1].out_features == 10


def test_the_emoji_classifier_sorts_held_out_emoji_into_their_groups(held_out_emoji):
    from ganforge.data import load_data
    from ganforge.metrics.classifier import load_classifier
    from ganforge.metrics.domain import class_histogram, classify

    data = load_data(str(held_out_emoji), 64)
    n = len(data)
    assert data.classes == load_classifier("emoji").class_names and n >= 40  # 45, less any glyph a font lacks
    feats, logits = classify(data.batch(torch.arange(n)), "emoji")
    assert feats.shape == (n, 128) and logits.shape == (n, 9)
    accuracy = float((logits.argmax(1) == data.labels).float().mean())
    assert accuracy > 0.4, accuracy  # chance is 1/9; about 0.6 measured on these
    hist = class_histogram(logits)
    assert hist["max_entropy"] == pytest.approx(np.log(9), abs=1e-3) and hist["classes_covered"] >= 6


def test_the_emoji_extractor_through_torch_fidelity(held_out_emoji):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from ganforge.data import load_data
    from ganforge.metrics.domain import classify
    from ganforge.metrics.extractors import default_extractor, register

    register()
    assert default_extractor("emoji") == "emoji-classifier"
    extractor = FEATURE_EXTRACTORS_REGISTRY["emoji-classifier"]("emoji-classifier", ["features", "logits"])
    data = load_data(str(held_out_emoji), 64)
    n = len(data)
    images = data.take(torch.arange(n))["image"]  # uint8 [n, 3, 64, 64], as torch-fidelity feeds it
    feats, logits = extractor(images)
    assert feats.shape == (n, 128) and logits.shape == (n, 9)
    ours, _ = classify(data.batch(torch.arange(len(data))), "emoji")
    assert torch.allclose(feats, ours, atol=1e-3)  # the same network, the same resize
    grey, _ = extractor(images[:, :1].contiguous())  # grey images are repeated to 3 channels
    assert grey.shape == (n, 128)


def test_only_the_named_emoji_dataset_gets_the_emoji_classifier(held_out_emoji, monkeypatch):
    import torch_fidelity

    from ganforge.data import sources
    from ganforge.metrics import evaluate as ev

    used = []

    def fake_metrics(**kwargs):
        used.append(kwargs["feature_extractor"])
        return {"frechet_inception_distance": 1.0}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_metrics)
    monkeypatch.setattr(ev, "inception_weights", lambda path=None: None)
    monkeypatch.setitem(sources.RENDERED, "emoji", lambda cache, size: held_out_emoji)  # no full render
    named = load_image_set("emoji", resolution=64)
    folder = load_image_set(held_out_emoji)
    assert named.dataset == "emoji" and folder.dataset is None
    copy = ImageSet(named.images.clone(), "copy")
    assert evaluate(copy, named, ("fid",))["extractor"] == "emoji-classifier"
    assert evaluate(copy, folder, ("fid",))["extractor"] == "inception-v3-compat"
    assert used == ["emoji-classifier", "inception-v3-compat"]
