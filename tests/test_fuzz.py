"""Fuzzing (hypothesis): the image loader, the config parser (--set and YAML) and the checkpoint reader take
generated hostile input for a bounded number of examples; every outcome is a clear GanforgeError or a success,
never another exception (a traceback for the user) or a hang."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganforge import config as C
from ganforge.registry import GanforgeError

from conftest import tiny_layers

# 60 examples each in the suite (seconds, the same examples every run); GANFORGE_FUZZ_EXAMPLES=2000 for a long hunt
# with fresh random examples
EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "60"))
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                   derandomize="GANFORGE_FUZZ_EXAMPLES" not in os.environ)

KEYS = ["train.steps", "train.lr_g", "train.betas", "train.batch_size", "data.resolution", "data.name", "arch.z_dim",
        "train.loss", "recipe.augment", "train.device", "train.precision", "data.channels", "train.seed"]
VALUES = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.just("[1, 2]"),
                   st.just("{a: 1}"), st.just("nan"), st.just("-inf"), st.just("1e400"), st.just(""))


@BOUNDED
@given(st.lists(st.one_of(st.text(max_size=30),
                          st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")),
                max_size=4))
def test_set_overrides_are_parsed_or_refused_clearly(items):
    try:
        C.resolve("dcgan", [C.parse_set(items)])
    except GanforgeError:
        pass


@BOUNDED
@given(st.one_of(st.text(max_size=200),
                 st.dictionaries(st.sampled_from(["train", "data", "arch", "recipe", "model", "x"]),
                                 st.one_of(st.dictionaries(st.text(max_size=12), VALUES, max_size=3), VALUES),
                                 max_size=3).map(str)))
def test_yaml_config_files_are_read_or_refused_clearly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(text)
    try:
        C.resolve("dcgan", [C.read_yaml(path)])
    except GanforgeError:
        pass


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (12, 9), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@BOUNDED
@given(st.one_of(st.binary(max_size=400),
                 st.tuples(st.integers(0, 400), st.integers(0, 255)).map(
                     lambda iv: bytearray(_png_bytes())[: iv[0]] + bytes([iv[1]]) * 3)),
       st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".webp", ".tiff"]))
def test_hostile_image_files_are_skipped_or_refused_clearly(tmp_path_factory, payload, ext):
    from ganforge.data import load_data

    folder = tmp_path_factory.mktemp("imgs")
    (folder / "good.png").write_bytes(_png_bytes())
    (folder / f"bad{ext}").write_bytes(bytes(payload))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stream in ("never", "always"):
            try:
                data = load_data(str(folder), 8, stream=stream)
                assert len(data) in (1, 2)
                data.take(torch.arange(len(data)))
            except GanforgeError:
                pass


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    from conftest import synthetic_fashion
    from ganforge.train.loop import train

    with synthetic_fashion(tmp_path_factory.mktemp("cache")):
        run = tmp_path_factory.mktemp("run") / "r"
        train(C.resolve("dcgan", tiny_layers("dcgan", steps=2)), run, progress=False)
    return sorted((run / "checkpoints").glob("step_*.safetensors"))[-1].read_bytes()


@BOUNDED
@given(st.data())
def test_damaged_checkpoints_are_refused_clearly(tmp_path_factory, checkpoint_bytes, data):
    import ganforge

    raw = bytearray(checkpoint_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "flip":
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=64)) + raw[at:]
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    path.write_bytes(bytes(raw))
    try:
        ganforge.load(path, device="cpu").sample(2)  # a harmless change (the header's padding) may still load
    except GanforgeError:
        pass
