"""What a long unattended run meets: divergence (rolled back, learning rates lowered, a NaN model never saved),
a full disk or a read-only folder during a save, a checkpoint damaged on disk, requests that cannot fit in
memory, and a corpus of hostile command lines (scripts/bad_inputs.py)."""
from __future__ import annotations

import errno
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge import config as C
from ganforge.registry import GanforgeError
from ganforge.train import checkpoint as ckpt_mod
from ganforge.train.checkpoint import list_checkpoints, read_header
from ganforge.train.loop import train

from conftest import assert_one_line_error, run_main, tiny_layers


def finite(path: Path) -> bool:
    return all(torch.isfinite(v).all() for v in load_file(str(path)).values() if v.is_floating_point())


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ divergence

def poison(monkeypatch, at_steps) -> None:
    """Make a run diverge: after the training steps whose index is in `at_steps` (a set, or a callable), one of
    D's weights becomes NaN, so every later loss is NaN, as after an exploding update."""
    from ganforge.train.loop import Setup

    real = Setup.train_step
    hit = at_steps if callable(at_steps) else (lambda step: step in at_steps and not at_steps.discard(step))

    def step(self, batch, inputs, step=0, schedule=None):
        out = real(self, batch, inputs, step, schedule)
        if hit(step):
            with torch.no_grad():
                next(self.D.parameters()).view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(Setup, "train_step", step)


def diverging_run(run: Path, monkeypatch, at_steps, steps=12, **train_kw) -> dict:
    saved = []
    real_save = ckpt_mod.save_checkpoint

    def spy(run_dir, step, nets, *a, **kw):
        path = real_save(run_dir, step, nets, *a, **kw)
        saved.append((step, finite(path)))
        return path

    with monkeypatch.context() as m:  # undone afterwards, leaving the test's own patches (its data) alone
        m.setattr("ganforge.train.loop.save_checkpoint", spy)
        poison(m, at_steps)
        layers = tiny_layers("dcgan", steps=steps, checkpoint_every=3, log_every=4, sample_every=0, **train_kw)
        result = train(C.resolve("dcgan", layers), run, progress=False)
    return {"result": result, "saved": saved}


def test_a_diverging_run_rolls_back_to_its_last_good_checkpoint_lowers_the_rates_and_finishes_finite(
        fake_fashion, tmp_path, monkeypatch):
    """D's weights turn NaN after step 7; the NaN losses of step 8 are seen at its log; the run goes back to
    its checkpoint of step 6, halves the learning rates and ends at step 12 with finite weights. No checkpoint
    it writes holds a non-finite tensor, and the rollback is exactly reproducible."""
    a = diverging_run(tmp_path / "a", monkeypatch, {6})
    assert a["result"]["step"] == 12
    assert a["saved"] and all(ok for _, ok in a["saved"]), f"a non-finite checkpoint was written: {a['saved']}"
    assert [s for s, _ in a["saved"]] == [3, 6, 9, 12]
    header = read_header(list_checkpoints(tmp_path / "a")[-1])
    assert header["rollbacks"] == 1 and header["lr_scale"] == 0.5
    # the optimisers run at the lowered rates (saved with them, so a resume keeps them)
    assert header["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5)
    warnings = [e["warning"] for e in events(tmp_path / "a") if "warning" in e]
    assert warnings == ["training diverged (non-finite loss or weights) at step 8: rolled back to checkpoint "
                        "step_00000006.safetensors (step 6), learning rates x0.5 (rollback 1 of at most 3)"]
    logged = [e for e in events(tmp_path / "a") if "loss/D" in e]
    assert [e["step"] for e in logged] == [4, 8, 12]  # step 8 as re-done after the rollback; nothing non-finite
    assert all(math.isfinite(v) for e in logged for v in e.values())
    assert torch.isfinite(ganforge.load(tmp_path / "a").sample(4)).all()
    # the same divergence, again: the same final weights, to the bit; without it: other weights
    b = diverging_run(tmp_path / "b", monkeypatch, {6})
    assert b["result"]["step"] == 12
    wa, wb = (load_file(str(list_checkpoints(tmp_path / r)[-1])) for r in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train(C.resolve("dcgan", tiny_layers("dcgan", steps=12, checkpoint_every=3, log_every=4, sample_every=0)),
          tmp_path / "c", progress=False)
    wc = load_file(str(list_checkpoints(tmp_path / "c")[-1]))
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_divergence_before_the_first_checkpoint_goes_back_to_the_start(fake_fashion, tmp_path, monkeypatch):
    poison(monkeypatch, {1})
    run = tmp_path / "run"
    layers = tiny_layers("dcgan", steps=6, checkpoint_every=100, log_every=2, sample_every=0)
    train(C.resolve("dcgan", layers), run, progress=False)
    warnings = [e["warning"] for e in events(run) if "warning" in e]
    # poisoned after step 2: step 3's losses are NaN, seen at the log of step 4
    assert len(warnings) == 1 and "at step 4: rolled back to the start of the run (step 0)" in warnings[0]
    assert finite(list_checkpoints(run)[-1]) and read_header(list_checkpoints(run)[-1])["step"] == 6


def test_a_run_that_keeps_diverging_stops_with_a_clear_error_and_keeps_its_good_checkpoints(
        fake_fashion, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, lambda step: step >= 4)  # every step after the checkpoint of step 4
    run = tmp_path / "run"
    args = ["train", "dcgan", "--data", "fashion-mnist", "--resolution", "16", "--steps", "30", "--batch-size", "8",
            "--quiet", "--out", str(run), "--checkpoint-every", "2", "--sample-every", "0",
            "--set", "arch.base_channels=4", "--set", "train.log_every=3", "--set", "train.diverge_retries=2"]
    proc = run_main(args, capsys)
    assert_one_line_error(proc, "diverged", "after 2 rollback(s)", "down to x0.25", "step_00000004.safetensors",
                          "train.lr_g")
    assert [p.name for p in list_checkpoints(run)][-1] == "step_00000004.safetensors"
    assert all(finite(p) for p in list_checkpoints(run))


def test_the_lr_of_1e30_from_the_issue_never_leaves_a_nan_checkpoint(fake_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    proc = run_main(["train", "dcgan", "--data", "fashion-mnist", "--resolution", "16", "--steps", "40",
                     "--batch-size", "8", "--quiet", "--out", str(run), "--checkpoint-every", "2", "--set",
                     "arch.base_channels=4", "--set", "train.lr_g=1e30", "--set", "train.lr_d=1e30"], capsys)
    assert_one_line_error(proc, "diverged", "3 rollback(s)")
    assert all(finite(p) for p in list_checkpoints(run))


def test_divergence_settings_are_checked(fake_fashion):
    with pytest.raises(GanforgeError, match="diverge"):
        C.resolve("dcgan", [{"train": {"diverge_lr_factor": 0}}])
    with pytest.raises(GanforgeError, match="diverge"):
        C.resolve("dcgan", [{"train": {"diverge_retries": -1}}])


# ------------------------------------------------------------------------------------------ the disk

def test_a_full_disk_during_a_save_stops_cleanly_and_keeps_the_previous_checkpoint(fake_fashion, tmp_path,
                                                                                  monkeypatch, capsys):
    calls = {"n": 0}
    real = ckpt_mod.atomic_write_bytes

    def full_disk(path, payload):
        if Path(path).parent.name == "checkpoints" and Path(path).name.startswith("step_"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second checkpoint: half written, then the disk is full
                tmp = Path(path).with_name(f".{Path(path).name}.tmp-test")
                tmp.write_bytes(payload[: len(payload) // 2])
                tmp.unlink()  # what atomic_write_bytes does on failure (tested below)
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
        return real(path, payload)

    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", full_disk)
    run = tmp_path / "run"
    proc = run_main(["train", "dcgan", "--data", "fashion-mnist", "--resolution", "16", "--steps", "9",
                     "--batch-size", "8", "--checkpoint-every", "3", "--sample-every", "0", "--quiet", "--out",
                     str(run), "--set", "arch.base_channels=4"], capsys)
    assert_one_line_error(proc, "No space left on device", "step_00000003.safetensors", "intact", "--resume")
    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["step_00000003.safetensors"]
    assert finite(ckpts[0]) and read_header(ckpts[0])["step"] == 3
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no partial file
    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes", real)  # space freed: the run resumes
    proc = run_main(["train", "dcgan", "--resume", "--out", str(run), "--steps", "9", "--quiet"], capsys)
    assert proc.returncode == 0, proc.stderr
    assert read_header(list_checkpoints(run)[-1])["step"] == 9


def test_atomic_writes_leave_no_partial_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def fail(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.os, "replace", fail)
    with pytest.raises(OSError):
        ckpt_mod.atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_a_read_only_run_folder_during_samples_is_one_clear_error(fake_fashion, tmp_path, monkeypatch, capsys):
    import ganforge.train.loop as loop_mod

    def read_only(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "samples"))

    monkeypatch.setattr(loop_mod, "save_grid", read_only)
    proc = run_main(["train", "dcgan", "--data", "fashion-mnist", "--resolution", "16", "--steps", "6",
                     "--batch-size", "8", "--checkpoint-every", "2", "--sample-every", "4", "--quiet", "--out",
                     str(tmp_path / "run"), "--set", "arch.base_channels=4"], capsys)
    # the grid of step 4 comes before its checkpoint: the newest one is step 2's
    assert_one_line_error(proc, "Read-only file system", "step 4", "step_00000002.safetensors", "intact")


# ------------------------------------------------------------------------------------------ damaged checkpoints

def _flip(path: Path, group: str) -> None:
    """Flip one bit in the middle of the first tensor of `group` (G, G_ema, opt...): the header still reads."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    entries = json.loads(data[8: 8 + n])
    name = next(k for k in sorted(entries) if k.startswith(group + ".") and entries[k]["data_offsets"][1] >
                entries[k]["data_offsets"][0])
    start, end = entries[name]["data_offsets"]
    data[8 + n + (start + end) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_found_by_its_checksum_and_resume_uses_the_previous(fake_fashion, tmp_path,
                                                                                   capsys):
    run = tmp_path / "run"
    cfg = C.resolve("dcgan", tiny_layers("dcgan", steps=6, checkpoint_every=3, sample_every=0))
    train(cfg, run, progress=False)
    older, newest = list_checkpoints(run)[-2:]
    assert set(read_header(newest)["checksums"]) == {"G", "D", "G_ema", "opt", "rng"}
    _flip(newest, "G_ema")  # a bit flip in the sampling generator's weights: the header still reads
    read_header(newest)
    with pytest.raises(GanforgeError, match="damaged"):
        ganforge.load(newest)
    with pytest.warns(UserWarning, match="damaged"):
        assert ckpt_mod.newest_checkpoint(run) == older
    cfg.train.steps = 8
    with pytest.warns(UserWarning, match="damaged"):
        train(cfg, run, resume=True, progress=False)
    assert read_header(list_checkpoints(run)[-1])["step"] == 8
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(older.read_bytes()[:-100])
    assert_one_line_error(run_main(["sample", str(truncated), "--out", str(tmp_path / "s")], capsys),
                          "truncated.safetensors")


def test_exported_models_carry_checksums_too(fake_fashion, tmp_path):
    from ganforge.sampling import export

    run = tmp_path / "run"
    train(C.resolve("dcgan", tiny_layers("dcgan", steps=2)), run, progress=False)
    path = export(run, tmp_path / "m.safetensors")
    assert "G" in read_header(path)["checksums"]
    _flip(path, "G")
    with pytest.raises(GanforgeError, match="damaged"):
        ganforge.load(path)


# ------------------------------------------------------------------------------------------ impossible requests

@pytest.mark.parametrize("flags,needle", [
    (["--resolution", "65536"], "--resolution"),
    (["--batch-size", "10000000"], "--batch-size"),
    (["--set", "arch.base_channels=100000", "--set", "arch.max_channels=100000"], "arch"),
])
def test_requests_that_cannot_fit_in_memory_are_refused_before_any_work(fake_fashion, tmp_path, capsys, flags,
                                                                       needle):
    import time

    t = time.perf_counter()
    proc = run_main(["train", "dcgan", "--data", "fashion-mnist", "--quiet", "--out", str(tmp_path / "r"), *flags],
                    capsys)
    assert_one_line_error(proc, "memory", needle)
    assert time.perf_counter() - t < 30
    assert not (tmp_path / "r").exists()


def test_the_memory_estimate_grows_with_what_is_asked():
    from ganforge.train.budget import training_estimate

    small = training_estimate(C.resolve("dcgan", [{}]), 1)
    big_batch = training_estimate(C.resolve("dcgan", [{"train": {"batch_size": 640}}]), 1)
    assert big_batch["activations"] == pytest.approx(10 * small["activations"], rel=0.01)
    assert big_batch["weights"] == small["weights"] > 0
    for model in ganforge.list_models():  # every family's forward is measured, not guessed
        assert training_estimate(C.resolve(model, [{"data": {"resolution": 32}}]), 3)["activations"] > 0, model


def test_empty_data_is_an_error_not_a_default(fake_fashion, tmp_path, capsys):
    for value in ("", "  "):
        assert_one_line_error(run_main(["train", "dcgan", "--data", value, "--out", str(tmp_path / "r")], capsys),
                              "empty")
    assert not (tmp_path / "r").exists()


def test_sampling_more_than_memory_holds_is_refused(fake_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    train(C.resolve("dcgan", tiny_layers("dcgan", steps=2)), run, progress=False)
    assert_one_line_error(run_main(["sample", str(run), "--n", "100000000000", "--out", str(tmp_path / "s")], capsys),
                          "memory", "or fewer would fit")
    assert_one_line_error(run_main(["interpolate", str(run), "--seeds", "1,2", "--steps", "100000000000", "--out",
                                    str(tmp_path / "w.gif")], capsys), "frames", "memory")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------ hostile inputs

def test_every_hostile_command_line_gets_one_clear_line(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import bad_inputs

    results = bad_inputs.run_corpus(tmp_path)
    assert len(results) >= 60
    failed = [(r["case"], r["problem"], r.get("stderr", "")[-400:]) for r in results if not r["ok"]]
    assert not failed, failed
