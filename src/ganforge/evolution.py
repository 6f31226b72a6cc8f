"""`ganforge evolution`: every generation trained on the same data with the same wall-time budget, judged by the
same extractor on the same number of samples, and shown side by side in an HTML report and its Markdown twin.

The job lives in its output folder:

    OUT/job.json              what was asked (data, resolution, minutes per model, seed, samples, overrides)
    OUT/runs/MODEL/           each model's ordinary run directory (`ganforge sample OUT/runs/dcgan` works)
    OUT/logs/MODEL.log        its training's output
    OUT/runs/MODEL/evolution.json   its measurements, keyed by the checkpoint they were taken from
    OUT/images/               sample grids and progress GIFs
    OUT/report.html, OUT/report.md

Each model trains in its own process (`python -m ganforge train ... --minutes`), `--jobs` of them at a time with
the CPU's threads split between them. A budget counts the wall time a run has trained, summed over its sessions
(the checkpoint's `train_seconds`): an interrupted job run again retrains nothing that finished and resumes a
half-trained model for the rest of its minutes.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .registry import GanforgeError

DEFAULT_MODELS = ("gan", "dcgan", "progan", "stylegan", "stylegan2", "sagan")
ASKED = ("data", "resolution", "minutes_per_model", "seed", "n", "set")  # what makes two jobs the same job
SLACK_S = 0.5  # a run that trained to within this of its budget is done


# ------------------------------------------------------------------------------------------ the job

def job_spec(args) -> dict:
    data = args.data
    if Path(data).expanduser().is_dir():  # a folder: the same folder whatever the working directory
        data = str(Path(data).expanduser().resolve())
    return {"data": data, "resolution": args.resolution, "minutes_per_model": args.minutes_per_model,
            "seed": args.seed, "n": args.n, "set": list(args.set)}


def check_models(models: list[str], spec: dict) -> None:
    """Registered generators from noise, each buildable at the job's data and resolution: a clear error now,
    not after an hour of training the others."""
    from . import config as config_mod
    from .registry import get_model

    if not models:
        raise GanforgeError("--models is empty: name at least one model (ganforge models lists them)")
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise GanforgeError(f"--models names {', '.join(twice)} twice")
    for m in models:
        model_spec = get_model(m)
        if model_spec.recipe == "paired":
            raise GanforgeError(f"{m} translates images (it needs paired data); the evolution compares generators "
                                f"that start from noise. Its own comparison: docs/models/{m}.md")
        config_mod.resolve(m, _layers(spec, m))  # a resolution the family cannot build, a bad --set: now
    named = {_model_of(x) for x in spec["set"]} - {None}
    if named - set(models):
        raise GanforgeError(f"--set names {', '.join(sorted(named - set(models)))}, not among --models "
                            f"({', '.join(models)})")


def _model_of(override: str) -> str | None:
    """"dcgan" for "dcgan:arch.base_channels=32"; None for an override of every model."""
    head, sep, _ = override.partition(":")
    return head if sep and "=" not in head else None


def _global_sets(spec: dict) -> list[str]:
    return [x for x in spec["set"] if _model_of(x) is None]


def model_sets(spec: dict, model: str) -> list[str]:
    """The job's --set overrides that apply to `model`: KEY=VALUE for every model, MODEL:KEY=VALUE for one."""
    return [x.partition(":")[2] if _model_of(x) else x for x in spec["set"] if _model_of(x) in (None, model)]


def _layers(spec: dict, model: str) -> list[dict]:
    from . import config as config_mod

    return [{"data": {"name": spec["data"], "resolution": spec["resolution"]}, "train": {"seed": spec["seed"]}},
            config_mod.parse_set(model_sets(spec, model))]


def check_out(out: Path) -> None:
    """A job's folder, or one that does not exist yet (or is empty): nothing else is written into."""
    if (out / "job.json").exists():
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GanforgeError(f"{out} exists and is not an evolution job's folder (no job.json); pick another --out")


def open_job(out: Path, spec: dict, models: list[str]) -> dict:
    """OUT/job.json: written by a new job, checked by a continued one (a different question in the same folder
    would mix two comparisons in one report)."""
    from .train.checkpoint import atomic_write_bytes

    path = out / "job.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise GanforgeError(f"{path} cannot be read ({e}); move the folder away or pick another --out") from None
        known = saved.get("models", [])
        new = [m for m in models if m not in known]
        started = [m for m in known if (out / "runs" / m / "config.yaml").exists()]
        if not started:  # nothing trained yet (say, every run failed at its start): the question may change
            kept = [x for x in saved.get("set", []) if _model_of(x) and _model_of(x) not in models]
            job = {**spec, "models": known + new, "set": spec["set"] + kept, "created": saved.get("created")}
        else:
            differ = [k for k in ASKED if k != "set" and saved.get(k) != spec[k]]
            if _global_sets(saved) != _global_sets(spec):
                differ.append("set")
            # a model's own overrides are fixed once it has started; one that has not may take new ones
            differ += [f"set for {m}" for m in started if m in models and model_sets(saved, m) != model_sets(spec, m)]
            if differ:
                what = "; ".join(f"{k}: {saved.get(k)!r} there, {spec[k]!r} asked" if k in ASKED else
                                 f"{k}: {model_sets(saved, k[8:])!r} there, {model_sets(spec, k[8:])!r} asked"
                                 for k in differ)
                raise GanforgeError(f"{out} holds another evolution job ({what}); continue it with the same options, "
                                    f"or pick another --out")
            own = [x for x in saved["set"] if _model_of(x) in started or (_model_of(x) and _model_of(x) not in models)]
            own += [x for x in spec["set"] if _model_of(x) and _model_of(x) not in started]
            job = {**saved, "models": known + new, "set": _global_sets(saved) + own}
    else:
        check_out(out)
        job = {**spec, "models": list(models), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(job, indent=1) + "\n").encode())
    return job


def trained_seconds(run: Path) -> float:
    """Wall time the run has trained so far, by its newest checkpoint (0 without one)."""
    import warnings

    from .train.checkpoint import newest_checkpoint, read_header

    if not (run / "checkpoints").is_dir():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt = newest_checkpoint(run, whole=False)
    if ckpt is None:
        return 0.0
    header = read_header(ckpt)
    if "train_seconds" not in header:
        raise GanforgeError(f"{run} holds a run that ganforge evolution did not start (its checkpoints do not count "
                            f"their training time); move it away")
    return float(header["train_seconds"])


# ------------------------------------------------------------------------------------------ training

class _Trainer:
    """One model's training process."""

    def __init__(self, model: str, out: Path, spec: dict, threads: int, device: str):
        self.model, self.run = model, out / "runs" / model
        self.budget = spec["minutes_per_model"] * 60
        self.before = trained_seconds(self.run)
        left = max(self.budget - self.before, 1.0)
        cmd = [sys.executable, "-m", "ganforge", "train", model, "--out", str(self.run), "--quiet",
               "--minutes", f"{left / 60:.6f}"]
        if (self.run / "config.yaml").exists():  # started before: the rest of its budget
            cmd.append("--resume")
        else:
            cmd += ["--data", spec["data"], "--resolution", str(spec["resolution"]), "--seed", str(spec["seed"]),
                    "--device", device]
            for s in model_sets(spec, model):
                cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        log = out / "logs" / f"{model}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with open(log, "a") as f:
            f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}  (threads {threads})\n")
            f.flush()
            # its own session: the terminal's Ctrl-C reaches the job, which asks each run once to stop (a
            # second signal would stop a run without its final checkpoint)
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.t0 = time.monotonic()

    def progress(self) -> float:
        return min(self.budget, self.before + time.monotonic() - self.t0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text[-lines:])


def train_all(out: Path, job: dict, models: list[str], jobs: int, device: str, progress: bool) -> dict[str, str]:
    """Train every model that has budget left, `jobs` at a time. Returns {model: "done" | "failed ..."}. On
    Ctrl-C or SIGTERM: asks every run in flight to stop (each saves a checkpoint), waits, raises _Interrupted."""
    state = {m: "done" for m in models if trained_seconds(out / "runs" / m) >= job["minutes_per_model"] * 60 - SLACK_S}
    todo = [m for m in models if m not in state]
    if not todo:
        return state
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo))))
    budget = job["minutes_per_model"] * 60
    bar = None
    if progress:
        from tqdm import tqdm

        left = sum(budget - trained_seconds(out / "runs" / m) for m in todo)
        bar = tqdm(total=round(left), desc="evolution", unit="s", dynamic_ncols=True, file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s of training [{elapsed}<"
                              "{remaining}{postfix}]", mininterval=1 if sys.stderr.isatty() else 30)
    got: list[int] = []

    def on_signal(signum, frame):
        got.append(signum)
        for t in running:
            t.stop()

    running: list[_Trainer] = []
    finished_s = 0.0
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        queue = list(todo)
        while queue or running:
            while queue and len(running) < jobs and not got:
                m = queue.pop(0)
                running.append(_Trainer(m, out, job, threads, device))
                if bar is None:
                    print(f"training {m} ({running[-1].budget - running[-1].before:.0f} s left, {threads} threads)",
                          file=sys.stderr)
            if got and not running:
                break
            time.sleep(0.5)
            for t in [t for t in running if t.proc.poll() is not None]:
                running.remove(t)
                rc = t.proc.returncode
                done = trained_seconds(t.run) >= t.budget - SLACK_S
                if rc == 0 and done:
                    state[t.model] = "done"
                elif got:
                    state[t.model] = "interrupted"
                else:
                    state[t.model] = f"failed (exit status {rc}); its log, {t.log}, ends:\n{_log_tail(t.log)}"
                    if bar is not None:
                        bar.write(f"{t.model}: {state[t.model]}", file=sys.stderr)
                finished_s += (t.budget if state[t.model] == "done" else t.progress()) - t.before
            if bar is not None:  # (tqdm's own mininterval holds back a log file's updates)
                bar.update(round(finished_s + sum(t.progress() - t.before for t in running)) - bar.n)
                bar.set_postfix_str(f"training {', '.join(t.model for t in running) or '-'}", refresh=False)
    finally:
        for t in running:  # an error in the job itself: its runs stop with a checkpoint
            t.stop()
        for t in running:
            t.proc.wait()
        for s, h in old.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()
    if got:
        raise _Interrupted(got[0])
    return state


class _Interrupted(Exception):
    def __init__(self, signum: int):
        self.signum = signum


# ------------------------------------------------------------------------------------------ measuring

def reference_set(job: dict):
    """What every model is compared with: the test split of a named dataset that has one, else the data's own
    images; n of them (default: all, up to 10000), at the job's resolution."""
    from .data.sources import DATASETS
    from .metrics.evaluate import load_image_set

    split = "test" if job["data"] in DATASETS else "train"
    return load_image_set(job["data"], n=job["n"] or 10000, split=split, resolution=job["resolution"],
                          seed=job["seed"])


def measure(out: Path, model: str, job: dict, reference, extractor: str | None) -> dict:
    """One model's row: FID, KID, precision/recall (and, where the extractor is a domain classifier, the samples'
    class coverage) on as many samples as reference images; its sizes and speed; its grid and progress GIF.
    Cached in the run by checkpoint: a continued job measures only what changed."""

    from .metrics.domain import class_histogram, classify
    from .metrics.evaluate import ImageSet, evaluate, to_uint8
    from .metrics.extractors import DOMAIN
    from .provenance import file_hash
    from .sampling import load
    from .train.checkpoint import newest_checkpoint, read_header
    from .viz import build_progress_gif, save_grid

    run = out / "runs" / model
    ckpt = newest_checkpoint(run)
    if ckpt is None:
        raise GanforgeError(f"{run} has no checkpoint to measure")
    n = len(reference.images)
    key = {"checkpoint": ckpt.name, "sha256": file_hash(ckpt), "n": n, "seed": job["seed"],
           "extractor": extractor, "reference": reference.name}
    cache = run / "evolution.json"
    images = out / "images"
    grid, gif = images / f"{model}.png", images / f"{model}-progress.gif"
    # the film is cheap: rebuilt every time from the run's grids (the report shows what this code makes)
    images.mkdir(parents=True, exist_ok=True)
    has_gif = bool(build_progress_gif(run / "samples", max_frames=6, out=gif, shrink=_shrink(run / "samples"),
                                      top_half=True))
    if cache.exists():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key and grid.exists():
                return {**saved["row"], "gif": has_gif}  # measured before, from this very checkpoint
        except (OSError, ValueError):
            pass
    print(f"measuring {model} ({n} samples against {reference.name})", file=sys.stderr)
    header = read_header(ckpt)
    gen = load(ckpt)
    fake = gen.sample(n, seed=job["seed"])
    res = evaluate(ImageSet(to_uint8(fake, f"{model} samples"), f"{model} samples", job["data"]), reference,
                   ("fid", "kid", "pr"), extractor, kid_subset_size=max(2, min(1000, n // 2)))
    row = {"model": model, "fid": res["fid"], "kid": res["kid"]["mean"], "kid_std": res["kid"]["std"],
           "precision": res["precision"], "recall": res["recall"], "extractor": res["extractor"],
           "n": n, "step": header["step"], "nimg": header.get("nimg"), "train_seconds": header["train_seconds"],
           "params_g": sum(p.numel() for p in gen.net.parameters()), "params_d": _params(ckpt, "D."),
           "resolution": gen.resolution, "conditional": gen.conditional, "threads": _threads(out / "logs" / f"{model}.log")}
    row["img_per_s"] = row["nimg"] / row["train_seconds"] if row["train_seconds"] else None
    if res["extractor"] in DOMAIN:
        _, logits = classify(fake, DOMAIN[res["extractor"]])
        row.update(class_histogram(logits), classes=logits.shape[1])
    if hasattr(gen.net, "growth"):  # how long it spent growing: the images it saw before its final stage
        row["grown_at_nimg"] = _grown_at(run, gen.resolution)
    cols = 8
    rows = 8 if gen.resolution <= 32 else 4  # small files: 8x4 at 64px
    del fake
    # small files: the grid at its pixels (the page scales it), the film at about 280 px
    save_grid(gen.sample(cols * rows, seed=job["seed"] + 1), grid, nrow=cols, meta=gen.provenance(seed=job["seed"] + 1),
              scale=1)
    row["gif"] = has_gif
    from .train.checkpoint import atomic_write_bytes

    atomic_write_bytes(cache, (json.dumps({"key": key, "row": row}, indent=1) + "\n").encode())
    return row


def _shrink(samples: Path) -> int:
    """How much to shrink the training grids for a film about 280 px wide."""
    from PIL import Image

    first = next(iter(sorted(samples.glob("step_*.png"))), None)
    if first is None:
        return 1
    with Image.open(first) as im:
        return max(1, round(im.width / 280))


def _params(ckpt: Path, prefix: str) -> int:
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix))


def _threads(log: Path) -> int | None:
    """The threads the model trained with (its log's last start line)."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("# ") and "(threads " in ln]
    except OSError:
        return None
    return int(lines[-1].rsplit("(threads ", 1)[1].rstrip(")")) if lines else None


def _grown_at(run: Path, resolution: int) -> int | None:
    try:
        for line in (run / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r.get("resolution") == resolution and r.get("alpha") == 1 and "nimg" in r:
                return r["nimg"]
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------------------------------------ the verb

def command(job: dict, models: list[str], out: Path) -> str:
    parts = ["ganforge evolution", f"--data {job['data']}", f"--resolution {job['resolution']}",
             f"--minutes-per-model {job['minutes_per_model']:g}", f"--models {','.join(models)}", f"--out {out}"]
    if job["n"]:
        parts.append(f"--n {job['n']}")
    if job["seed"]:
        parts.append(f"--seed {job['seed']}")
    parts += [f"--set {s}" for s in job["set"] if _model_of(s) in (None, *models)]
    return " ".join(parts)


def run(args) -> int:
    from .evolution_report import write_report
    from .train.device import pick_device

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    spec = job_spec(args)
    check_models(models, spec)
    device = args.device
    pick_device(device)  # an unavailable device: now
    out = Path(args.out) if args.out else Path("evolution") / f"{Path(spec['data']).name}-{spec['resolution']}px"
    check_out(out)
    reference = reference_set(spec)  # the data is there (and every model will be judged against this)
    from .metrics.extractors import require_extractor

    require_extractor(args.extractor, spec["data"] if reference.dataset else None)  # at hand: now, not in an hour
    job = open_job(out, spec, models)
    again = command(job, models, out)
    try:
        state = train_all(out, job, models, args.jobs, device, progress=not args.quiet)
    except _Interrupted as e:
        print(f"stopped by signal {e.signum}; every run in flight saved a checkpoint. Continue with:\n  {again}",
              file=sys.stderr)
        return 128 + e.signum
    failed = {m: s for m, s in state.items() if s != "done"}
    rows = []
    for m in models:
        if m in failed:
            continue
        rows.append(measure(out, m, job, reference, args.extractor))
    html, md = write_report(out, job, rows, models, failed, again)
    for m, why in failed.items():
        print(f"{m}: {why}", file=sys.stderr)
    print(f"report:   {html}\nmarkdown: {md}")
    if failed:
        print(f"{len(failed)} model(s) did not finish; fix the cause and run the same command again to continue:\n"
              f"  {again}", file=sys.stderr)
        return 1
    return 0
