"""`ganforge bench`: ganforge's step against the plain PyTorch loop of the same networks (a tiny run of it)."""
from __future__ import annotations

import json

from conftest import assert_one_line_error, run_main


def test_bench_measures_both_loops_and_merges_its_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    res = run_main(["bench", "--models", "gan", "--batch-size", "8", "--blocks", "1", "--steps", "1",
                    "--json", str(out)], capsys)
    assert res.returncode == 0, res.stderr
    assert "plain" in res.stdout and "ganforge" in res.stdout and "GFLOP/s" in res.stdout
    rows = json.loads(out.read_text())
    (row,) = rows.values()
    assert row["model"] == "gan" and row["plain_img_s"] > 0 and row["ganforge_img_s"] > 0
    assert abs(row["ratio"] - row["ganforge_img_s"] / row["plain_img_s"]) < 0.01
    assert row["command"].startswith("ganforge bench")


def test_bench_refuses_a_model_without_a_baseline_in_one_line(capsys):
    assert_one_line_error(run_main(["bench", "--models", "stylegan"], capsys), "no plain-loop baseline", "stylegan")
    assert_one_line_error(run_main(["bench", "--blocks", "x"], capsys), "--blocks")
