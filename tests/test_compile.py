"""`train.compile`: torch.compile for G and D (train/compile.py). Compiled runs train, checkpoint under eager's
names and resume bit-identically; gradient penalties run their network eagerly (no double backward through a
compiled graph); a fade-in does not recompile at every step; `auto` compiles only what its table lists."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from ganforge import config as C
from ganforge.registry import GanforgeError
from ganforge.train import compile as compiling
from ganforge.train.checkpoint import list_checkpoints
from ganforge.train.loop import build, train

from conftest import tiny_layers
from test_resume import assert_identical, weights


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_an_unknown_value_is_a_clear_error():
    with pytest.raises(GanforgeError, match=r"train.compile must be one of auto, off, on, G, D, all, got 'fast'"):
        C.resolve("dcgan", [{"train": {"compile": "fast"}}])
    # YAML reads off and on as booleans: they still mean off and on
    assert C.resolve("dcgan", [C.parse_set(["train.compile=off"])]).train.compile == "off"
    assert C.resolve("dcgan", [C.parse_set(["train.compile=on"])]).train.compile == "on"


@pytest.mark.parametrize("model,device,minutes,expected", [
    ("stylegan2", "cpu", 30, ("G",)),   # listed, and the run is long enough to earn the compile back
    ("stylegan2", "cpu", 10, ()),       # too short
    ("stylegan2", "cpu", 0, ()),        # bounded by steps only: no estimate of its length
    ("dcgan", "cpu", 30, ()),           # not listed
    ("stylegan2", "cuda", 30, ()),      # listed for a CPU only
])
def test_auto_compiles_only_what_its_table_lists_for_long_enough_runs(model, device, minutes, expected, monkeypatch):
    cfg = C.new_config(model)
    cfg.train.minutes = minutes
    assert compiling.networks(cfg, torch.device(device)) == ()  # the shipped table: nothing paid in real runs yet
    monkeypatch.setattr(compiling, "AUTO", {("cpu", "stylegan2"): ("G", 15.0)})
    assert compiling.networks(cfg, torch.device(device)) == expected
    for value, nets in (("off", ()), ("G", ("G",)), ("D", ("D",)), ("all", ("G", "D")), ("on", ("G", "D"))):
        cfg.train.compile = value
        assert compiling.networks(cfg, torch.device(device)) == nets


def test_a_spectrally_normalised_D_is_refused_with_the_way_out():
    cfg = C.resolve("sagan", tiny_layers("sagan") + [{"train": {"compile": "on"}}])
    with pytest.raises(GanforgeError, match=r"train.compile=on: sagan's D is spectrally normalised.*train.compile=G"):
        build(cfg, 1, torch.device("cpu"))


@pytest.mark.parametrize("model", ["progan", "stylegan"])
def test_a_fade_in_compiles_once_per_stage_not_once_per_alpha(model):
    """alpha changes at every step of a fade-in; compiled, it is read from a buffer, so the graph is reused. The
    compiled fade equals the eager one, and at alpha = 0 the previous stage's output."""
    cfg = C.resolve(model, tiny_layers(model) + [{"train": {"compile": "off"}}])
    s = build(cfg, 1, torch.device("cpu"))
    G, D = s.G.eval(), s.D.eval()
    counter = CompileCounter()
    cG = torch.compile(G, backend=counter)
    cD = torch.compile(D, backend=counter)
    z = torch.randn(4, G.z_dim)
    kw = {"noise": None} if model == "stylegan" else {}
    frames = []
    for alpha in (0.0, 0.1, 0.37, 0.8):
        for net in (G, D):
            net.set_growth(8, alpha)
        with torch.no_grad():
            img, eager_img = cG(z, **kw), G(z, **kw)
            torch.testing.assert_close(img, eager_img)
            torch.testing.assert_close(cD(img), D(img))
        frames.append(counter.frame_count)
    assert frames[0] > 0 and frames[1:] == frames[:1] * 3, frames  # compiled once for the fade, never again
    for net in (G, D):
        net.set_growth(4)
    with torch.no_grad():
        low = torch.nn.functional.interpolate(G(z, **kw), scale_factor=2, mode="nearest")
        for net in (G, D):
            net.set_growth(8, 0.0)
        torch.testing.assert_close(cG(z, **kw), low)


def test_penalties_run_their_network_eagerly():
    """R1 and WGAN-GP differentiate through an input gradient; the compiled D is not traced inside them."""
    from ganforge.recipes.progressive import gradient_penalty
    from ganforge.recipes.style import r1_penalty

    for model, penalty in (("progan", lambda D, x: gradient_penalty(D, x, x.flip(0))),
                           ("stylegan2", r1_penalty)):
        s = build(C.resolve(model, tiny_layers(model) + [{"train": {"compile": "off"}}]), 1, torch.device("cpu"))
        counter = CompileCounter()
        s.D.compile(backend=counter)
        x = torch.rand(4, 1, 16, 16) * 2 - 1
        s.D(x)  # the compiled D's ordinary call is traced ...
        traced = counter.frame_count
        assert traced > 0
        torch.manual_seed(0)  # WGAN-GP's mixing weights
        value = penalty(s.D, x)  # ... the penalty's is not
        value.backward()
        assert counter.frame_count == traced
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.D.parameters())  # D's weights learn
        s.D.zero_grad()
        torch.manual_seed(0)
        with torch.compiler.set_stance("force_eager"):
            torch.testing.assert_close(penalty(s.D, x), value)


def test_a_compiled_run_trains_saves_eager_names_and_resumes_bit_identically(fake_fashion, tmp_path):
    """stylegan2 with G and D compiled (inductor) and every phase (lazy R1 and path length, run eagerly): the
    checkpoint holds exactly the eager run's tensor names, a stopped-and-resumed compiled run ends bit-identical to
    an unbroken one, and its losses follow the eager run's."""
    model = "stylegan2"
    layers = lambda steps, compile_: tiny_layers(model, steps=steps, checkpoint_every=2, sample_every=0,  # noqa
                                                 compile=compile_, device="cpu") + [
        {"recipe": {"r1_every": 2, "pl_every": 2}}]
    counters = torch._dynamo.utils.counters
    counters.clear()
    train(C.resolve(model, layers(4, "all")), tmp_path / "full", progress=False)
    assert counters["stats"]["unique_graphs"] >= 3  # G, D, D frozen: compiled, not silently eager
    part = C.resolve(model, layers(2, "all"))
    torch._dynamo.reset()  # each run as in its own process: dynamo keeps what it learnt of shapes per process
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 4
    torch._dynamo.reset()
    train(part, tmp_path / "part", resume=True, progress=False)
    assert_identical(list_checkpoints(tmp_path / "full")[-1], list_checkpoints(tmp_path / "part")[-1])
    train(C.resolve(model, layers(4, "off")), tmp_path / "eager", progress=False)
    newest = lambda run: weights(list_checkpoints(tmp_path / run)[-1])  # noqa: E731
    compiled, eager = newest("full"), newest("eager")
    assert set(compiled) == set(eager)
    for k in compiled:  # the same training, up to the rounding of differently fused kernels
        torch.testing.assert_close(compiled[k], eager[k], atol=5e-2, rtol=5e-2, msg=k)


def test_auto_is_resolved_into_the_saved_config_so_a_resume_compiles_what_the_run_did(fake_fashion, tmp_path,
                                                                                       monkeypatch):
    """A resume with a shorter --minutes must not switch a compiled run to eager (they round differently), nor
    an eager run to compiled: `auto` is written into config.yaml as what it chose. A config saved before
    train.compile existed resumes eagerly, as it trained."""
    import yaml

    train(C.resolve("dcgan", tiny_layers("dcgan", steps=1, device="cpu")), tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["compile"] == "off"  # auto, resolved: dcgan is not compiled on a CPU
    monkeypatch.setattr(compiling, "AUTO", {("cpu", "stylegan2"): ("G", 15.0)})
    cfg = C.resolve("stylegan2", tiny_layers("stylegan2", device="cpu") + [{"train": {"minutes": 30}}])
    build(cfg, 1, torch.device("cpu"))
    assert cfg.train.compile == "G"  # auto, resolved for a 30-minute CPU run
    old = cfg.to_dict()
    del old["train"]["compile"]
    assert C.from_dict(old).train.compile == "off"
