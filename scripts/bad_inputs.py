"""A generated corpus of hostile and mistaken command lines, run against the real CLI (`ganforge.cli.main`, in
this process): every case must end with exit status 2 and one clear line on stderr that starts with
"ganforge", no traceback, no hang, nothing written where it should not be.

    python scripts/bad_inputs.py            # prints the table; exit status 1 if any case fails
    python scripts/bad_inputs.py --json out.json

It makes everything it needs in a temporary folder: synthetic Fashion-MNIST-shaped IDX files (as the test suite
does; no real data is read), two tiny trained runs (a dcgan and a pix2pix), damaged files and folders. The
test suite runs it (tests/test_bad_inputs.py).
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import signal
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TIMEOUT_S = 60  # a case still running after this has started real work: it fails


def _write_idx(folder: Path, n: int, split: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for i in range(n):
        y, x = rng.integers(4, 16, 2)
        images[i, y: y + 8, x: x + 8] = 200 + labels[i] * 5
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{stems[0]}.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + images.tobytes())
    with gzip.open(folder / f"{stems[1]}.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.tobytes())


def _png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_world(root: Path) -> dict[str, str]:
    """Files, folders and runs the cases point at; returns {name: path}."""
    from ganforge import config as C
    from ganforge.train.loop import train

    cache = root / "cache"
    _write_idx(cache / "fashion-mnist", 96, "train", 0)
    _write_idx(cache / "fashion-mnist", 48, "test", 1)
    os.environ.update(GANFORGE_DATA=str(cache), GANFORGE_SYSTEM_DATA="", GANFORGE_NO_DOWNLOAD="1")
    w: dict[str, Path] = {"root": root}
    tiny = {"data": {"resolution": 16}, "train": {"steps": 2, "batch_size": 8, "sample_every": 0, "log_every": 1}}
    w["run"] = root / "dcgan-run"
    train(C.resolve("dcgan", [tiny, {"arch": {"base_channels": 4, "z_dim": 8}}]), w["run"], progress=False)
    w["p2p"] = root / "pix2pix-run"
    train(C.resolve("pix2pix", [tiny, {"arch": {"ngf": 4, "ndf": 4}, "data": {"name": "edges2fashion"}}]),
          w["p2p"], progress=False)
    ckpt = sorted((w["run"] / "checkpoints").glob("step_*.safetensors"))[-1]
    w["ckpt"] = ckpt
    w["truncated"] = root / "truncated.safetensors"
    w["truncated"].write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    flipped = bytearray(ckpt.read_bytes())
    n = int.from_bytes(flipped[:8], "little")
    entries = json.loads(flipped[8: 8 + n])
    for name, e in entries.items():  # a bit flip in every weight of the sampling generator
        start, end = e.get("data_offsets", (0, 0)) if isinstance(e, dict) else (0, 0)
        if name.startswith("G_ema.") and end > start:
            flipped[8 + n + (start + end) // 2] ^= 0x10
    w["flipped"] = root / "flipped.safetensors"
    w["flipped"].write_bytes(bytes(flipped))
    w["random"] = root / "random.safetensors"
    w["random"].write_bytes(np.random.default_rng(0).bytes(5000))
    w["empty_file"] = root / "empty.safetensors"
    w["empty_file"].write_bytes(b"")
    w["empty_dir"] = root / "empty-dir"
    w["empty_dir"].mkdir()
    w["text_dir"] = root / "text-only"
    w["text_dir"].mkdir()
    (w["text_dir"] / "notes.txt").write_text("no images here")
    w["broken_dir"] = root / "broken-images"
    w["broken_dir"].mkdir()
    for i in range(3):
        (w["broken_dir"] / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    w["fake_png"] = root / "fake.png"
    w["fake_png"].write_text("this is text, not a picture")
    w["img"] = _png(root / "drawing.png", np.full((20, 20), 255, np.uint8))
    w["flat"] = root / "flat-folder"
    for i in range(10):
        _png(w["flat"] / f"{i}.png", np.full((16, 16), i * 20, np.uint8))
    w["odd"] = root / "odd-pairs"
    _png(w["odd"] / "a.png", np.zeros((16, 33), np.uint8))
    w["lonely"] = root / "lonely-pairs"
    _png(w["lonely"] / "A" / "x.png", np.zeros((16, 16), np.uint8))
    _png(w["lonely"] / "B" / "x.png", np.zeros((16, 16), np.uint8))
    _png(w["lonely"] / "A" / "y.png", np.zeros((16, 16), np.uint8))
    w["sizes"] = root / "mismatched-pairs"
    _png(w["sizes"] / "A" / "x.png", np.zeros((16, 16), np.uint8))
    _png(w["sizes"] / "B" / "x.png", np.zeros((24, 24), np.uint8))
    w["yaml_bad"] = root / "bad.yaml"
    w["yaml_bad"].write_text("train: {steps: [unclosed\n")
    w["yaml_list"] = root / "list.yaml"
    w["yaml_list"].write_text("- 1\n- 2\n")
    w["yaml_unknown"] = root / "unknown.yaml"
    w["yaml_unknown"].write_text("train:\n  stepz: 3\n")
    w["plain_file"] = root / "plainfile"
    w["plain_file"].write_text("a file where a folder should go")
    w["existing"] = root / "existing.safetensors"
    w["existing"].write_bytes(b"mine")
    w["samples"] = root / "samples-exist"
    w["samples"].mkdir()
    (w["samples"] / "000000.png").write_bytes(b"mine")
    return {k: str(v) for k, v in w.items()}


def cases(w: dict[str, str]) -> list[tuple[str, list[str], str]]:
    """(what, argv, a word the one line must hold)."""
    r, p, o = w["run"], w["p2p"], w["root"] + "/out"
    return [
        # the command line itself
        ("unknown verb", ["dance"], "invalid choice"),
        ("unknown option", ["train", "dcgan", "--colour", "blue"], "unrecognized"),
        ("unknown model", ["train", "resnet"], "unknown model"),
        ("unknown dataset to prepare", ["data", "prepare", "imagenet"], "unknown dataset"),
        # train: data
        ("--data empty (an unset variable)", ["train", "dcgan", "--data", ""], "empty"),
        ("--data blank", ["train", "dcgan", "--data", "   "], "empty"),
        ("--data missing path", ["train", "dcgan", "--data", w["root"] + "/nowhere"], "nowhere"),
        ("--data empty folder", ["train", "dcgan", "--data", w["empty_dir"]], "no images"),
        ("--data folder of text files", ["train", "dcgan", "--data", w["text_dir"]], "no images"),
        ("--data folder of broken images", ["train", "dcgan", "--data", w["broken_dir"]], "could be read"),
        ("--data a file, not a folder", ["train", "dcgan", "--data", w["img"]], "not a folder"),
        ("class-conditional on a flat folder", ["train", "dcgan", "--class-conditional", "--data", w["flat"],
                                                "--resolution", "16"], "class subfolders"),
        ("class-conditional progan", ["train", "progan", "--class-conditional"], "class-conditional"),
        ("pix2pix on unpaired data", ["train", "pix2pix", "--data", "fashion-mnist"], "edges2fashion"),
        ("pix2pix, odd-width A|B file", ["train", "pix2pix", "--data", w["odd"]], "a.png"),
        ("pix2pix, A without its B", ["train", "pix2pix", "--data", w["lonely"]], "y.png"),
        ("pix2pix, A and B of different sizes", ["train", "pix2pix", "--data", w["sizes"]], "x.png"),
        ("pix2pix, unknown direction", ["train", "pix2pix", "--data", "edges2fashion", "--set",
                                        "data.direction=sideways"], "direction"),
        ("pix2pix, impossible patch", ["train", "pix2pix", "--data", "edges2fashion", "--set",
                                       "arch.receptive_field=50"], "receptive_field"),
        ("unknown stream mode", ["train", "dcgan", "--set", "data.stream=sometimes"], "stream"),
        # train: sizes
        ("resolution 65536", ["train", "dcgan", "--resolution", "65536"], "memory"),
        ("resolution 0", ["train", "dcgan", "--resolution", "0"], "resolution"),
        ("resolution not a number", ["train", "dcgan", "--resolution", "big"], "resolution"),
        ("resolution 3", ["train", "dcgan", "--resolution", "3"], "resolution"),
        ("batch size 0", ["train", "dcgan", "--batch-size", "0"], "batch-size"),
        ("batch larger than the data", ["train", "dcgan", "--batch-size", "500", "--resolution", "16"], "batch"),
        ("batch of ten million", ["train", "dcgan", "--batch-size", "10000000"], "memory"),
        ("width of 100,000 channels", ["train", "dcgan", "--set", "arch.base_channels=100000", "--set",
                                        "arch.max_channels=100000"], "memory"),
        ("steps negative", ["train", "dcgan", "--steps", "-5"], "steps"),
        ("minutes negative", ["train", "dcgan", "--minutes", "-1"], "minutes"),
        ("steps 0 without minutes", ["train", "dcgan", "--set", "train.steps=0"], "steps"),
        # train: config
        ("--set value of the wrong type", ["train", "dcgan", "--set", "train.lr_g=fast"], "lr_g"),
        ("--set unknown section", ["train", "dcgan", "--set", "optim.lr=1"], "optim"),
        ("--set unknown key", ["train", "dcgan", "--set", "train.stepz=3"], "stepz"),
        ("--set without =", ["train", "dcgan", "--set", "train.steps"], "KEY=VALUE"),
        ("--set NaN learning rate", ["train", "dcgan", "--set", "train.lr_g=nan"], "lr_g"),
        ("--set infinite learning rate", ["train", "dcgan", "--set", "train.lr_d=inf"], "lr_d"),
        ("--set betas out of range", ["train", "dcgan", "--set", "train.betas=[2,3]"], "betas"),
        ("--set zero latent size", ["train", "dcgan", "--set", "arch.z_dim=0"], "z_dim"),
        ("--set unknown loss", ["train", "dcgan", "--set", "train.loss=magic"], "loss"),
        ("--set unknown optimiser", ["train", "dcgan", "--set", "train.optimizer=lbfgs"], "optimizer"),
        ("--set unknown augmentation", ["train", "dcgan", "--set", "recipe.augment=rotate"], "augment"),
        ("--config missing", ["train", "dcgan", "--config", w["root"] + "/none.yaml"], "none.yaml"),
        ("--config not YAML", ["train", "dcgan", "--config", w["yaml_bad"]], "YAML"),
        ("--config a list", ["train", "dcgan", "--config", w["yaml_list"]], "mapping"),
        ("--config unknown key", ["train", "dcgan", "--config", w["yaml_unknown"]], "stepz"),
        ("--device that does not exist", ["train", "dcgan", "--device", "cuda:7"], "cuda"),
        ("--device nonsense", ["train", "dcgan", "--device", "tpu"], "tpu"),
        ("--seed negative", ["train", "dcgan", "--seed", "-1"], "seed"),
        ("--eval-every with an unknown extractor", ["train", "dcgan", "--eval-every", "10", "--set",
                                                    "train.eval_extractor=vgg"], "vgg"),
        ("--out over an existing run", ["train", "dcgan", "--resolution", "16", "--out", r], "already holds a run"),
        # sample
        ("sample a missing run", ["sample", w["root"] + "/no-run", "--out", o], "no-run"),
        ("sample an empty file", ["sample", w["empty_file"], "--out", o], "empty.safetensors"),
        ("sample random bytes", ["sample", w["random"], "--out", o], "random.safetensors"),
        ("sample a truncated checkpoint", ["sample", w["truncated"], "--out", o], "truncated.safetensors"),
        ("sample a bit-flipped checkpoint", ["sample", w["flipped"], "--out", o], "flipped.safetensors"),
        ("sample --n 0", ["sample", r, "--n", "0", "--out", o], "--n"),
        ("sample --n of a hundred billion", ["sample", r, "--n", "100000000000", "--out", o], "memory"),
        ("sample --out a file name", ["sample", r, "--out", o + ".png"], "folder"),
        ("sample over existing samples", ["sample", r, "--out", w["samples"]], "exists"),
        ("sample --class of an unconditional model", ["sample", r, "--class", "3", "--out", o], "unconditional"),
        ("sample --truncation negative", ["sample", r, "--truncation", "-1", "--out", o], "truncation"),
        ("sample --seed negative", ["sample", r, "--seed", "-3", "--out", o], "seed"),
        ("sample --format jpg", ["sample", r, "--format", "jpg", "--out", o], "format"),
        ("sample a translator", ["sample", p, "--out", o], "translate"),
        # interpolate
        ("interpolate one seed", ["interpolate", r, "--seeds", "1", "--out", o + ".gif"], "two seeds"),
        ("interpolate --steps 1", ["interpolate", r, "--seeds", "1,2", "--steps", "1", "--out", o + ".gif"], "steps"),
        ("interpolate to a .txt", ["interpolate", r, "--seeds", "1,2", "--out", o + ".txt"], ".gif"),
        ("interpolate seeds not numbers", ["interpolate", r, "--seeds", "a,b", "--out", o + ".gif"], "seeds"),
        ("interpolate in W without a mapping", ["interpolate", r, "--seeds", "1,2", "--space", "w", "--out",
                                                o + ".gif"], "mapping"),
        ("interpolate a hundred billion frames", ["interpolate", r, "--seeds", "1,2", "--steps", "100000000000",
                                                 "--out", o + ".gif"], "memory"),
        ("interpolate a translator", ["interpolate", p, "--seeds", "1,2", "--out", o + ".gif"], "translat"),
        # eval
        ("eval nothing", ["eval"], "nothing to evaluate"),
        ("eval --fake without --real", ["eval", "--fake", w["empty_dir"]], "--real"),
        ("eval an unknown metric", ["eval", r, "--metrics", "ssim"], "ssim"),
        ("eval an unknown extractor", ["eval", r, "--extractor", "vgg", "--n", "20"], "vgg"),
        ("eval an empty folder", ["eval", "--fake", w["empty_dir"], "--real", "fashion-mnist"], "no images"),
        ("eval a model and --fake", ["eval", r, "--fake", w["empty_dir"]], "not both"),
        ("eval KID subsets larger than the sets", ["eval", r, "--n", "10", "--kid-subset-size", "1000"], "KID"),
        ("eval a translator against --real", ["eval", p, "--real", "fashion-mnist"], "held-out"),
        # export
        ("export a missing run", ["export", w["root"] + "/no-run", "--out", o + ".safetensors"], "no-run"),
        ("export over an existing file", ["export", r, "--out", w["existing"]], "exists"),
        # translate
        ("translate with a model that samples", ["translate", r, "--input", w["img"], "--out", o], "dcgan"),
        ("translate a missing input", ["translate", p, "--input", w["root"] + "/none.png", "--out", o], "none.png"),
        ("translate a text file named .png", ["translate", p, "--input", w["fake_png"], "--out", o], "fake.png"),
        ("translate an empty folder", ["translate", p, "--input", w["empty_dir"], "--out", o], "no images"),
        ("translate with a seed past 2**63", ["translate", p, "--input", w["img"], "--out", o, "--seed",
                                              str(2**64)], "seed"),
        ("translate --out an existing file", ["translate", p, "--input", w["img"], "--out", w["plain_file"]],
         "plainfile"),
        ("translate --out a file name", ["translate", p, "--input", w["img"], "--out", o + ".png"], "folder"),
        # style and attention tools on models without them
        ("mix without a mapping network", ["mix", r, "--out", o + ".png"], "mapping"),
        ("truncation without a mapping network", ["truncation", r, "--out", o + ".png"], "mapping"),
        ("project a missing image", ["project", r, "--image", w["root"] + "/none.png", "--out", o], "mapping"),
        ("attention of a model without attention", ["attention", r, "--out", o + ".png"], "attention"),
        # serve (each refused before a server starts)
        ("serve a missing run", ["serve", w["root"] + "/none", "--port", "0"], "none"),
        ("serve two models of one name", ["serve", f"a={r}", f"a={p}", "--port", "0"], "two models are named"),
        ("serve a text file as a model", ["serve", w["fake_png"], "--port", "0"], "fake.png"),
        ("serve on a port that is not a number", ["serve", r, "--port", "http"], "port"),
        ("serve on a port past 65535", ["serve", r, "--port", "70000"], "65535"),
        ("serve a negative cache", ["serve", r, "--cache-mib", "-1"], "cache-mib"),
    ]


class _Timeout(Exception):
    pass


def run_case(argv: list[str]) -> tuple[int, str, str, float]:
    """cli.main(argv) in this process: (exit status, stdout, stderr, seconds)."""
    from ganforge.cli import main

    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIMEOUT_S)
    t = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 2
    except _Timeout:
        rc = -1
        err.write(f"(still running after {TIMEOUT_S} s: it started real work)\n")
    except BaseException as e:  # noqa: BLE001 (a crash is a result here)
        import traceback

        rc = -2
        err.write("Traceback (uncaught)\n" + "".join(traceback.format_exception(e)))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t


def judge(rc: int, stderr: str, word: str) -> str | None:
    """None when the outcome is a clear one-line error holding `word`; else what is wrong."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr:
        return "traceback"
    if rc != 2:
        return f"exit status {rc}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr"
    if not lines[0].startswith("ganforge"):
        return "the line does not start with 'ganforge'"
    if word.lower() not in lines[0].lower():
        return f"the line does not mention {word!r}"
    return None


def run_corpus(root: Path) -> list[dict]:
    import warnings

    w = make_world(root)
    results = []
    import shutil

    for what, argv, word in cases(w):
        for leftover in Path(w["root"]).glob("out*"):  # each case starts with nothing at its --out
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc, _, err, secs = run_case(argv)
        problem = judge(rc, err, word)
        line = next((x for x in err.splitlines() if x.strip()), "")
        results.append({"case": what, "argv": " ".join(a.replace(w["root"], "$TMP") for a in argv),
                        "exit": rc, "line": line.replace(w["root"], "$TMP"), "seconds": round(secs, 2),
                        "ok": problem is None, "problem": problem,
                        **({"stderr": err.replace(w["root"], "$TMP")[-2000:]} if problem else {})})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ganforge-bad-inputs-") as tmp:
        results = run_corpus(Path(tmp))
    for r in results:
        mark = "ok  " if r["ok"] else "FAIL"
        print(f"{mark} {r['case']:45s} -> {r['line'][:150]}" + ("" if r["ok"] else f"   [{r['problem']}]"))
    bad = [r for r in results if not r["ok"]]
    print(f"\n{len(results) - len(bad)} of {len(results)} hostile inputs gave one clear line and exit status 2")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
