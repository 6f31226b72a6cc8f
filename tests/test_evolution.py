"""`ganforge evolution`: trains every model on the same data and budget (or reuses and continues what its folder
holds), measures them alike, and writes the report; tiny configs on synthetic Fashion-MNIST."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY, assert_one_line_error, run_cli, write_idx

from ganforge.evolution import trained_seconds
from ganforge.evolution_report import reading, table
from ganforge.train.checkpoint import newest_checkpoint


@pytest.fixture
def fashion(fake_fashion):
    """Synthetic Fashion-MNIST with a test split too: what the models are measured against."""
    return write_idx(fake_fashion, n=64, split="test", seed=1)


def tiny_sets(*models: str) -> list[str]:
    """TINY's architecture of each model as MODEL:KEY=VALUE overrides."""
    out = []
    for m in models:
        for key, value in TINY[m]["arch"].items():
            out += ["--set", f"{m}:arch.{key}={value}"]
    return out


def evolution(out, models, minutes, *extra, timeout=300):
    return run_cli("evolution", "--data", "fashion-mnist", "--resolution", "16", "--minutes-per-model", str(minutes),
                   "--models", ",".join(models), "--out", str(out), "--n", "64", "--quiet",
                   *tiny_sets(*models), *extra, timeout=timeout)


def test_a_job_trains_measures_reports_and_is_not_redone(fashion, tmp_path):
    out = tmp_path / "job"
    proc = evolution(out, ["gan", "dcgan"], 0.04, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    budget = 0.04 * 60
    for m in ("gan", "dcgan"):
        assert trained_seconds(out / "runs" / m) >= budget - 0.5  # each had its whole budget
        row = json.loads((out / "runs" / m / "evolution.json").read_text())["row"]
        assert row["n"] == 64 and row["extractor"] == "fashion-mnist-classifier"
        assert row["nimg"] > 0 and row["img_per_s"] > 0 and row["params_g"] > 0 and row["params_d"] > 0
        assert row["threads"] == max(1, (os.cpu_count() or 1) // 2)  # two at a time: the threads split
        assert (out / "images" / f"{m}.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    for m in ("gan", "dcgan"):
        assert re.search(rf"^\| `{m}` \| 20\d\d \| \**\d+\.\d\d", md, re.M), md  # a row of numbers
        assert f"images/{m}.png" in md
    assert "Lowest FID" in md and "Goodfellow" in md and "Radford" in md
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/') >= 2 and 'src="images/' not in page and "http://" not in page.replace(
        "http://www.w3.org", "")  # self-contained: every image inline

    # the same command again: nothing retrained, nothing re-measured
    ckpts = {m: newest_checkpoint(out / "runs" / m) for m in ("gan", "dcgan")}
    stamps = {m: (out / "runs" / m / "evolution.json").stat().st_mtime_ns for m in ("gan", "dcgan")}
    t0 = time.monotonic()
    again = evolution(out, ["gan", "dcgan"], 0.04)
    assert again.returncode == 0, again.stderr
    assert {m: newest_checkpoint(out / "runs" / m) for m in ckpts} == ckpts
    assert {m: (out / "runs" / m / "evolution.json").stat().st_mtime_ns for m in stamps} == stamps
    assert "training" not in again.stderr, again.stderr

    # a model added later: only it trains, and the report holds all three
    more = evolution(out, ["gan", "dcgan", "sagan"], 0.04)
    assert more.returncode == 0, more.stderr
    assert {m: newest_checkpoint(out / "runs" / m) for m in ckpts} == ckpts
    assert trained_seconds(out / "runs" / "sagan") >= budget - 0.5
    assert "`sagan`" in (out / "report.md").read_text()
    assert time.monotonic() - t0 < 200

    # another question in the same folder: refused, naming the difference
    other = evolution(out, ["gan"], 0.05)
    assert_one_line_error(other, "another evolution job", "minutes_per_model")


def test_an_interrupted_job_continues_the_half_trained_model(fashion, tmp_path):
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "ganforge.cli", "evolution", "--data", "fashion-mnist", "--resolution", "16",
           "--minutes-per-model", "0.25", "--models", "dcgan", "--out", str(out), "--n", "64", "--quiet",
           *tiny_sets("dcgan"), "--set", "train.log_every=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "runs" / "dcgan" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log.exists(), "training never started"
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Continue with" in stderr and "ganforge evolution" in stderr
    first = newest_checkpoint(out / "runs" / "dcgan")
    assert first is not None  # the run saved where it stopped
    spent = trained_seconds(out / "runs" / "dcgan")
    assert 0 < spent < 15 - 0.5
    step = int(first.stem.split("_")[1])

    cont = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert cont.returncode == 0, cont.stderr
    assert trained_seconds(out / "runs" / "dcgan") >= 15 - 0.5  # the rest of its budget, not a new one
    assert int(newest_checkpoint(out / "runs" / "dcgan").stem.split("_")[1]) > step
    starts = [ln for ln in (out / "logs" / "dcgan.log").read_text().splitlines() if ln.startswith("# ")]
    assert len(starts) == 2 and "--resume" in starts[1] and "--resume" not in starts[0]
    assert float(re.search(r"--minutes (\S+)", starts[1]).group(1)) * 60 == pytest.approx(15 - spent, abs=0.01)


def test_a_model_that_failed_at_its_start_can_be_given_other_settings(fashion, tmp_path):
    out = tmp_path / "job"
    proc = evolution(out, ["gan", "dcgan"], 0.03, "--set", "dcgan:train.batch_size=500")  # more than the data
    assert proc.returncode == 1
    assert "dcgan: failed" in proc.stderr and "fewer than one batch" in proc.stderr
    assert "run the same command again" in proc.stderr
    assert trained_seconds(out / "runs" / "gan") >= 0.03 * 60 - 0.5  # the others still trained
    assert "## Not finished" in (out / "report.md").read_text()
    gan = newest_checkpoint(out / "runs" / "gan")
    fixed = evolution(out, ["gan", "dcgan"], 0.03, "--set", "dcgan:train.batch_size=16")
    assert fixed.returncode == 0, fixed.stderr
    assert newest_checkpoint(out / "runs" / "gan") == gan  # not retrained
    assert "dcgan:train.batch_size=16" in json.loads((out / "job.json").read_text())["set"]
    # gan has started: its settings are fixed now
    assert_one_line_error(evolution(out, ["gan", "dcgan"], 0.03, "--set", "gan:train.batch_size=16"),
                          "another evolution job", "set for gan")


@pytest.mark.parametrize("models, extra, needles", [
    ("gan,pix2pix", [], ("pix2pix translates images",)),
    ("gan,nosuch", [], ("unknown model 'nosuch'",)),
    ("gan,gan", [], ("names gan twice",)),
    ("gan", ["--set", "dcgan:arch.base_channels=4"], ("--set names dcgan",)),
    ("progan", ["--resolution", "48"], ("48",)),
])
def test_bad_jobs_are_one_line_errors_before_any_training(fashion, tmp_path, models, extra, needles):
    args = ["evolution", "--data", "fashion-mnist", "--minutes-per-model", "1", "--models", models,
            "--out", str(tmp_path / "job"), *extra]
    proc = run_cli(*args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "job" / "runs").exists()


def test_a_folder_that_is_not_a_job_is_left_alone(fashion, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    proc = run_cli("evolution", "--data", "fashion-mnist", "--minutes-per-model", "1", "--models", "gan",
                   "--out", str(tmp_path / "mine"))
    assert_one_line_error(proc, "not an evolution job's folder")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def _row(model, fid, nimg, seconds=600.0, **kw):
    return {"model": model, "fid": fid, "kid": fid / 100, "kid_std": 0.001, "precision": 0.5, "recall": 0.5,
            "params_g": 1_000_000, "params_d": 1_000_000, "step": nimg // 16, "nimg": nimg, "img_per_s": nimg / seconds,
            "train_seconds": seconds, "threads": 1, "resolution": 32, **kw}


def test_the_reading_says_where_a_later_generation_loses_and_why():
    job = {"minutes_per_model": 10}
    rows = [_row("dcgan", 3.0, 300_000), _row("progan", 16.0, 60_000, grown_at_nimg=36_000),
            _row("stylegan2", 2.0, 100_000)]
    says = reading(rows, job)
    assert says[0].startswith("Lowest FID at 10 minutes: `stylegan2` (2.00)")
    progan = [s for s in says if s.startswith("`progan`")]
    assert len(progan) == 1
    assert "trails `dcgan` (2015)" in progan[0] and "16.00 against 3.00" in progan[0]
    assert "5.0 times fewer" in progan[0] and "60% of its images" in progan[0]
    assert not [s for s in says if s.startswith("`stylegan2`")]  # it beats every earlier one: no excuse needed
    head, cells = table(rows)
    fid = head.index("FID")
    assert [c[fid] for c in cells] == ["3.00", "16.00", "**2.00**"]  # the best of the column, and only it, bold
