"""The `ganforge` command. Every user error is one line on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .evolution import DEFAULT_MODELS as EVOLUTION_MODELS
from .registry import GanforgeError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's two-line usage dump becomes one actionable line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {s!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"a port is in [0, 65535], got {v}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _positive_float(s: str) -> float:
    v = _nonneg_float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


TRUNCATION_HELP = ("less variety, more typical images. With a mapping network (stylegan, stylegan2): psi, toward "
                   "the average w, w' = w_avg + psi (w - w_avg): 1 = none, 0 = the average image for every seed, any "
                   "finite value. Other models: BigGAN's threshold T > 0, every z coordinate with |z| > T redrawn")
MAPPING = "(models with a mapping network)"


def _seeds(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {s!r}") from None


def _points(s: str) -> list[tuple[float, float]]:
    """'Y,X;Y,X' -> [(y, x), ...] (their range is the attention tool's to check)."""
    out = []
    for part in filter(None, (p.strip() for p in s.split(";"))):
        try:
            y, x = (float(v) for v in part.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected Y,X pairs of fractions separated by ';', e.g. "
                                             f"0.25,0.25;0.5,0.5, got {s!r}") from None
        out.append((y, x))
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one Y,X pair, got {s!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ganforge", description="Train, sample and explore GANs from 2014 to 2018.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="verb", parser_class=_Parser, metavar="VERB")

    sub.add_parser("models", help="registered models and their papers")

    d = sub.add_parser("data", help="what data is available, and where it was found")
    dsub = d.add_subparsers(dest="data_verb", parser_class=_Parser, metavar="list|prepare")
    dsub.add_parser("list", help="named datasets and where each was found")
    prep = dsub.add_parser("prepare", help="find a dataset, downloading it into the cache if need be")
    prep.add_argument("name")

    t = sub.add_parser("train", help="train a model")
    t.add_argument("model", help="a registered model (ganforge models)")
    t.add_argument("--data", help="dataset name (ganforge data list) or a folder of images")
    t.add_argument("--resolution", type=_positive_int)
    t.add_argument("--steps", type=_positive_int, help="generator updates to reach (default 5000; none with --minutes)")
    t.add_argument("--minutes", type=_nonneg_float, help="stop after this much wall time (with a checkpoint)")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--out", help="run directory (default runs/MODEL-DATA-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--seed", type=int)
    t.add_argument("--config", help="a YAML file of overrides")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set train.lr_g=1e-4 --set arch.base_channels=32")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    t.add_argument("--checkpoint-every", type=_positive_int)
    t.add_argument("--sample-every", type=int)
    t.add_argument("--eval-every", type=int, help="FID/KID every N steps (keeps checkpoints/best.safetensors)")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--class-conditional", action="store_true",
                   help="condition G and D on the data's classes (named datasets, or a folder's class subfolders)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="write samples of a trained model")
    s.add_argument("run", metavar="RUN_OR_CKPT")
    s.add_argument("--n", type=_positive_int, default=64)
    s.add_argument("--out", required=True, help="folder for PNGs, or a .npz file with --format npz")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--truncation", type=float, metavar="PSI_OR_T", help=TRUNCATION_HELP)
    s.add_argument("--format", choices=("png", "npz"), default="png")
    s.add_argument("--grid", action="store_true", help="also write grid.png")
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    s.add_argument("--class", dest="cls", help="class index or name (class-conditional models)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")

    i = sub.add_parser("interpolate", help="a walk between seeds' latents, as a GIF or a strip")
    i.add_argument("run", metavar="RUN_OR_CKPT")
    i.add_argument("--out", required=True, help="FILE.gif or FILE.png")
    i.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3])
    i.add_argument("--steps", type=_positive_int, default=8, help="images per segment")
    i.add_argument("--space", choices=("z", "w"),
                   help="latent space to walk in: w (the intermediate latents; default for models with a mapping "
                        "network) or z (the inputs; default, and the only one, for the others)")
    i.add_argument("--method", choices=("slerp", "lerp"), help="default: slerp in z, lerp in w")
    i.add_argument("--truncation", type=float, metavar="PSI_OR_T", help=TRUNCATION_HELP)
    i.add_argument("--no-noise", action="store_true",
                   help="models with noise inputs: none (default: the first seed's noise in every frame)")
    i.add_argument("--class", dest="cls", help="class index or name (class-conditional models; default: 0)")
    i.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    i.add_argument("--force", action="store_true")

    tr = sub.add_parser("truncation", help=f"each seed's image as psi goes from 1 to 0 {MAPPING}")
    tr.add_argument("run", metavar="RUN_OR_CKPT")
    tr.add_argument("--out", required=True, help="FILE.png: rows are the seeds, columns the psis")
    tr.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3])
    tr.add_argument("--psis", type=_floats, default=[1.0, 0.75, 0.5, 0.25, 0.0],
                    help="comma-separated psi values, one column each (default 1,0.75,0.5,0.25,0)")
    tr.add_argument("--no-noise", action="store_true", help="no per-pixel noise (default: each seed's own)")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    tr.add_argument("--force", action="store_true")

    m = sub.add_parser("mix", help=f"StyleGAN's style-mixing figure {MAPPING}")
    m.add_argument("run", metavar="RUN_OR_CKPT")
    m.add_argument("--out", required=True,
                   help="FILE.png: column sources on top, row sources on the left; one band of rows per style "
                        "group (coarse, middle, fine), each cell the row source with that group's styles taken "
                        "from the column source")
    m.add_argument("--row-seeds", type=_seeds, default=[0, 1, 2])
    m.add_argument("--col-seeds", type=_seeds, default=[3, 4, 5, 6])
    m.add_argument("--truncation", type=float, metavar="PSI", help="psi for every source (1: none)")
    m.add_argument("--no-noise", action="store_true", help="no per-pixel noise (default: the row source's)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    m.add_argument("--force", action="store_true")

    va = sub.add_parser("variation", help=f"one seed under many draws of the noise, and each pixel's std {MAPPING}")
    va.add_argument("run", metavar="RUN_OR_CKPT")
    va.add_argument("--out", required=True, help="FILE.png: the images, then the per-pixel std map (white: most)")
    va.add_argument("--seed", type=int, default=0, help="the seed of the one w")
    va.add_argument("--n", type=_positive_int, default=8, help="images to show")
    va.add_argument("--draws", type=_positive_int, default=64, help="noise draws the std is taken over")
    va.add_argument("--truncation", type=float, metavar="PSI", help="psi (1: none)")
    va.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    va.add_argument("--force", action="store_true")

    pr = sub.add_parser("project", help=f"find the latent w that reproduces a real image {MAPPING}")
    pr.add_argument("run", metavar="RUN_OR_CKPT")
    pr.add_argument("--image", required=True, help="the image (any size and mode; resized like the training data)")
    pr.add_argument("--out", required=True,
                    help="folder for reconstruction.png (target | reconstruction), latent.safetensors (w and the "
                         "noise maps) and progress.gif")
    pr.add_argument("--steps", type=_positive_int, default=250, help="optimisation steps (NVlabs: 1000)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--fixed-noise", action="store_true", help="optimise w only, not the noise maps")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    pr.add_argument("--force", action="store_true", help="write into a non-empty --out (replacing only those files)")
    pr.add_argument("--quiet", action="store_true", help="no progress lines")

    at = sub.add_parser("attention", help="where self-attention looks from a few query points, SAGAN's figure 1 "
                                          "(models with self-attention: sagan)")
    at.add_argument("run", metavar="RUN_OR_CKPT")
    at.add_argument("--out", required=True,
                    help="FILE.png: one row per seed, the image with the query points marked, then each point's "
                         "attention map (black, red, yellow, white: least to most) over the greyed image")
    at.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3])
    at.add_argument("--points", type=_points, metavar="Y,X;Y,X",
                    help="query points as fractions of the image's height and width in [0, 1), separated by ';' "
                         "(default 0.25,0.25;0.5,0.5;0.75,0.6)")
    at.add_argument("--class", dest="cls", help="class index or name (class-conditional models; default: each "
                                                "seed's own draw)")
    at.add_argument("--layer", type=_positive_int, metavar="RESOLUTION",
                    help="the attention layer of G, by resolution (default: its highest-resolution one)")
    at.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    at.add_argument("--force", action="store_true")

    v = sub.add_parser("eval", help="FID, KID, IS, precision/recall of a model or of two image sets (JSON); a "
                                    "class-conditional model on a dataset with a domain classifier: class accuracy")
    v.add_argument("run", metavar="RUN_OR_CKPT", nargs="?", help="a model to sample (or give --fake)")
    v.add_argument("--data", help="reference: dataset name or folder (default: the run's training data)")
    v.add_argument("--real", help="reference set without a model: dataset name, folder or .npz")
    v.add_argument("--fake", help="images to judge without a model: folder or .npz")
    v.add_argument("--split", default="test", choices=("train", "test"), help="split of a named reference dataset")
    v.add_argument("--n", type=_positive_int, default=10000, help="samples per set")
    v.add_argument("--metrics", default="fid,kid,pr", help="comma-separated: fid,kid,is,pr")
    v.add_argument("--extractor", help="inception-v3-compat, fashion-mnist-classifier, mnist-classifier, "
                                       "emoji-classifier (default: the domain classifier where the data has one)")
    v.add_argument("--kid-subset-size", type=_positive_int, default=1000)
    v.add_argument("--inception-weights", help="path to torch-fidelity's Inception weights file")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--device", default="auto", help="auto, cpu, cuda (the first GPU)")

    x = sub.add_parser("translate", help="translate an image or a folder of images with an image-to-image model "
                                         "(pix2pix)")
    x.add_argument("run", metavar="RUN_OR_CKPT")
    x.add_argument("--input", required=True, help="an image, or a folder of images (read recursively)")
    x.add_argument("--out", required=True, help="folder for the translations (PNG, named as the inputs)")
    x.add_argument("--seed", type=int, default=0, help="fixes the test-time dropout (the model's noise)")
    x.add_argument("--no-dropout", action="store_true", help="deterministic outputs: dropout off when translating "
                                                             "(the paper keeps it on)")
    x.add_argument("--compare", action="store_true", help="write input | output side by side instead")
    x.add_argument("--force", action="store_true", help="overwrite existing files")
    x.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")

    sv = sub.add_parser("serve", help="a web page (\"This ... Does Not Exist\") and an HTTP API over trained models")
    sv.add_argument("runs", nargs="+", metavar="RUN_OR_CKPT",
                    help="run directories, checkpoints or exported models, each optionally as NAME=PATH")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    sv.add_argument("--port", type=_port, default=8000)
    sv.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sv.add_argument("--cache-mib", type=_nonneg_float, default=64, help="PNGs kept for repeated requests (MiB)")

    # its options are the benchmark's own (ganforge.bench.speed): main() hands them over unparsed
    sub.add_parser("bench", add_help=False, help="img/s of each model's training step against a plain PyTorch "
                   "loop of the same networks, with GFLOP/s (ganforge bench --help)")

    ev = sub.add_parser("evolution", help="every generation on the same data and wall-time budget, side by side: "
                                          "trains (or continues), evaluates, writes an HTML report and its Markdown")
    ev.add_argument("--data", required=True, help="dataset name or a folder of images")
    ev.add_argument("--minutes-per-model", type=_positive_float, required=True, metavar="M",
                    help="wall time each model trains (summed over interruptions)")
    ev.add_argument("--models", default=",".join(EVOLUTION_MODELS), help="comma-separated, in the report's order "
                    f"(default {','.join(EVOLUTION_MODELS)})")
    ev.add_argument("--resolution", type=_positive_int, default=32, help="the same for every model (default 32)")
    ev.add_argument("--out", help="the job's folder (default evolution/DATA-RESOLUTIONpx); run the same command "
                                  "again to continue an interrupted job or add models")
    ev.add_argument("--jobs", type=_positive_int, default=1, help="models trained at once, the CPU's threads split "
                                                                  "between them (default 1)")
    ev.add_argument("--n", type=_positive_int, help="samples per model and reference images (default: the test split, "
                                                    "10000, or all of the data's images up to 10000)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                    help="a config override for every model, or for one (dcgan:arch.base_channels=32)")
    ev.add_argument("--extractor", help="feature extractor (default: the data's domain classifier, else Inception)")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("export", help="one self-describing .safetensors file to share")
    e.add_argument("run", metavar="RUN")
    e.add_argument("--out", required=True)
    e.add_argument("--force", action="store_true")
    return p


# ------------------------------------------------------------------------------------------ verbs

def cmd_models(args) -> None:
    from .registry import get_model, list_models

    for name in list_models():
        spec = get_model(name)
        res = "/".join(map(str, spec.resolutions)) or "any"
        print(f"{name:8s} {spec.paper}  [paper resolution: {res}]")


def cmd_data(args) -> None:
    from .data import data_status, prepare

    if args.data_verb == "prepare":
        print(f"{args.name}: {prepare(args.name)}")
        return
    for row in data_status():
        where = row["found"] or f"not found (get it: {row['install']}, or `ganforge data prepare {row['name']}`)"
        print(f"{row['name']:14s} {where}")
    print("any folder     a path to a folder of images (searched recursively)")


def _train_layers(args) -> list[dict]:
    from . import config as config_mod

    layers = []
    if args.config:
        layers.append(config_mod.read_yaml(args.config))
    flags: dict = {"data": {}, "train": {}}
    if args.data is not None:
        flags["data"]["name"] = args.data
    if args.resolution is not None:
        flags["data"]["resolution"] = args.resolution
    for key, attr in [("steps", "steps"), ("minutes", "minutes"), ("batch_size", "batch_size"), ("seed", "seed"),
                      ("checkpoint_every", "checkpoint_every"), ("sample_every", "sample_every"),
                      ("eval_every", "eval_every"),
                      ("device", "device")]:
        if getattr(args, attr) is not None:
            flags["train"][key] = getattr(args, attr)
    if getattr(args, "class_conditional", False):
        flags["arch"] = {"num_classes": -1}  # as many as the data has, resolved when it is loaded
    layers.append({k: v for k, v in flags.items() if v})
    if args.set:
        layers.append(config_mod.parse_set(args.set))
    return layers


def cmd_train(args) -> int:
    """`ganforge train`; under torchrun (`torchrun --nproc_per_node=N -m ganforge train ...`) every process runs
    this, joins the process group first, and takes rank 0's run directory and resolved config."""
    from .train import dist

    world = dist.from_env()
    if not world.active:
        return _train(args, dist)
    from . import config as config_mod

    probe = config_mod.resolve(args.model, _train_layers(args))
    dist.init(probe.train.device, probe.train.dist_timeout_s)
    try:
        status = _train(args, dist)
        # every rank here before any tears the group down: rank 0 is still writing the last samples while the
        # others are done, and gloo aborts a process ("terminate called without an active exception") whose
        # peer destroys its connections mid-use
        dist.barrier()
        return status
    finally:
        dist.shutdown()


def _train(args, dist) -> int:
    from . import config as config_mod
    from .registry import get_model
    from .train.loop import train
    from .train.run import prepare_run

    spec = get_model(args.model)  # unknown model: a clear error before anything else
    if args.class_conditional and not hasattr(spec.config_cls(), "num_classes"):
        raise GanforgeError(f"{args.model} has no class-conditional form")
    layers = _train_layers(args)
    if args.resume and not args.out:
        raise GanforgeError("--resume needs --out RUN_DIR: the run to continue")
    if args.out:
        run_dir = Path(args.out)
    else:
        cfg_probe = config_mod.resolve(args.model, layers)
        data_tag = Path(cfg_probe.data.name).name or "data"
        run_dir = Path("runs") / f"{args.model}-{data_tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    world = dist.world()
    run_dir = dist.broadcast_object(run_dir)  # (a name from the clock: rank 0's)
    try:  # rank 0 checks the run directory; the others take its answer (they would race its writes)
        cfg = prepare_run(args.model, layers, run_dir, args.resume) if world.main else None
        answer = cfg
    except GanforgeError as e:
        answer = e
    answer = dist.broadcast_object(answer)
    if isinstance(answer, GanforgeError):
        raise answer
    cfg = answer
    if args.dry_run:
        if world.main:
            print(config_mod.to_yaml(cfg), end="")
        return
    if world.active and world.main:
        b = cfg.train.batch_size
        from .train.device import pick_device

        backend = "nccl" if pick_device(cfg.train.device).type == "cuda" else "gloo"
        print(f"torchrun: {world.size} processes ({backend}), batch {b} per process, global batch {b * world.size}",
              file=sys.stderr)
    result = train(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    if not world.main:
        return 128 + result["signal"] if result["signal"] else 0
    print(f"run:        {result['run_dir']}  (step {result['step']}, stopped by {result['stopped_by']})")
    print(f"checkpoint: {result['checkpoint']}")
    print(f"samples:    {result['samples']}")
    if result["progress_gif"]:
        print(f"progress:   {result['progress_gif']}")
    if result["signal"]:
        # Stopped by Ctrl-C or SIGTERM, after a clean checkpoint: the conventional status tells a scheduler
        # the job did not finish, so it can requeue it with --resume.
        print(f"stopped by signal {result['signal']}; continue with: ganforge train {cfg.model} --out {run_dir} "
              f"--resume", file=sys.stderr)
        return 128 + result["signal"]
    return 0


def _check_free(paths: list[Path], force: bool) -> None:
    taken = [p for p in paths if p.exists()]
    if taken and not force:
        raise GanforgeError(f"{taken[0]} exists ({len(taken)} file(s) would be overwritten); choose another "
                            f"--out or pass --force")


def _meta(gen, args, *names: str, **fields) -> dict[str, str]:
    """The origin an image carries (`Generator.provenance`): the model and checkpoint, the arguments `names` that
    fix the image, as given (cls as "class"; None left out), and `fields`."""
    return gen.provenance(**{"class" if n == "cls" else n: getattr(args, n) for n in names}, **fields)


def _looks_like_file(out: Path) -> bool:
    """An --out that must be a folder but names a file: an existing file, or a new name ending in an image or
    archive extension (samples.png, out.npz). A folder name with a dot in it (psi0.7, run.v2) is a folder."""
    from .data.sources import IMAGE_EXTENSIONS

    return out.is_file() or (not out.exists() and out.suffix.lower() in (*IMAGE_EXTENSIONS, ".npz", ".zip"))


def cmd_sample(args) -> None:
    import numpy as np

    from .sampling import load
    from .viz import save_grid, save_images, to_hwc_uint8

    from .train.budget import check_samples

    gen = load(args.run, device=args.device)
    check_samples(args.n, gen.channels, gen.resolution)
    inputs = gen.inputs(args.n, seed=args.seed, truncation=args.truncation, labels=args.cls)
    images = gen.generate(inputs)
    out = Path(args.out)
    if args.format == "npz":
        path = out if out.suffix == ".npz" else out / "samples.npz"
        _check_free([path], args.force)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"labels": inputs["c"].numpy()} if "c" in inputs else {}
        origin = json.dumps(_meta(gen, args, "seed", "truncation", "cls", "n"))  # the PNGs' text chunks, as JSON
        np.savez_compressed(path, images=to_hwc_uint8(images), z=inputs["z"].numpy(), provenance=np.array(origin),
                            **extra)  # images: [N, H, W, C]
        print(f"{args.n} samples -> {path}")
        return
    if _looks_like_file(out):
        raise GanforgeError(f"--out {out} looks like a file; with --format png it must be a folder")
    targets = [out / f"{i:06d}.png" for i in range(args.n)] + ([out / "grid.png"] if args.grid else [])
    _check_free(targets, args.force)
    meta = _meta(gen, args, "seed", "truncation", "cls", "n")
    save_images(images, out, meta=meta)
    if args.grid:
        save_grid(images[:256], out / "grid.png", meta=meta)
    print(f"{args.n} samples -> {out}/")


def cmd_interpolate(args) -> None:
    from .sampling import interpolate, load
    from .viz import make_grid, save_gif, save_grid

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".png"):
        raise GanforgeError(f"--out must end in .gif or .png, got {out}")
    _check_free([out], args.force)
    from .train.budget import check_samples

    gen = load(args.run, device=args.device)
    frames = max(0, len(args.seeds) - 1) * args.steps + 1
    check_samples(frames, gen.channels, gen.resolution, f"a walk of {frames} frames")
    labels = None
    if gen.conditional:
        labels = args.cls if args.cls is not None else 0
    elif args.cls is not None:
        gen.class_index(args.cls)  # the clear error: this model takes no class
    images = interpolate(gen, args.seeds, args.steps, args.method, args.space, args.truncation, labels,
                         noise=not args.no_noise)
    space = args.space or ("w" if gen.has_mapping else "z")
    method = args.method or ("slerp" if space == "z" else "lerp")
    noise = not args.no_noise if gen.capabilities["noise"] else None  # a model without noise inputs: not its say
    meta = _meta(gen, args, "seeds", "steps", "truncation", space=space, method=method, noise=noise,
                 **{"class": labels})
    if out.suffix.lower() == ".png":
        save_grid(images, out, nrow=args.steps, meta=meta)
    else:
        save_gif([make_grid(x[None], nrow=1, padding=0) for x in images], out, meta=meta)
    print(f"interpolation of seeds {','.join(map(str, args.seeds))} in {space} -> {out}")


def _png_out(args) -> Path:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise GanforgeError(f"--out must end in .png, got {out}")
    _check_free([out], args.force)
    return out


def _style_model(args, tool: str):
    from .sampling import load

    gen = load(args.run, device=args.device)
    gen.require_mapping(tool)
    return gen


def cmd_truncation(args) -> None:
    from .style_tools import truncation_strip

    out = _png_out(args)
    gen = _style_model(args, "the truncation strip")
    fig = truncation_strip(gen, args.seeds, args.psis, noise=not args.no_noise)
    fig.save(out, meta=_meta(gen, args, "seeds", "psis", noise=not args.no_noise))
    print(f"truncation strip of seeds {','.join(map(str, args.seeds))} (rows) at psi "
          f"{','.join(f'{p:g}' for p in args.psis)} (columns) -> {out}")


def cmd_mix(args) -> None:
    from .style_tools import style_mix

    out = _png_out(args)
    gen = _style_model(args, "style mixing")
    fig = style_mix(gen, args.row_seeds, args.col_seeds, args.truncation, noise=not args.no_noise)
    fig.save(out, meta=_meta(gen, args, "row_seeds", "col_seeds", "truncation", noise=not args.no_noise))
    print(f"style mixing -> {out}")
    print(f"  top row: column sources, seeds {','.join(map(str, args.col_seeds))}; left column: row sources")
    k = len(args.row_seeds)
    for b, band in enumerate(fig.meta["bands"]):
        where = f"rows {2 + b * k}-{1 + (b + 1) * k}" if k > 1 else f"row {2 + b}"
        print(f"  {where}: seeds {','.join(map(str, args.row_seeds))} with the {band} styles of each column's "
              f"source")


def cmd_variation(args) -> None:
    from .style_tools import stochastic_variation

    out = _png_out(args)
    gen = _style_model(args, "stochastic variation")
    fig = stochastic_variation(gen, args.seed, args.n, args.draws, args.truncation)
    fig.save(out, meta=_meta(gen, args, "seed", "n", "draws", "truncation"))
    peak = fig.meta["max_std"]
    print(f"{args.n} noise draws of seed {args.seed}, then the per-pixel std over {fig.meta['draws']} draws "
          f"(white = {peak:.3g}) -> {out}")
    if peak == 0:
        print("  the noise changes nothing: this model's noise strengths are zero (untrained?)")


def cmd_project(args) -> None:
    from .style_tools import check_out_dir, project, read_target, save_projection

    out = check_out_dir(args.out, args.force)
    gen = _style_model(args, "projection")
    target = read_target(gen, args.image)
    every = max(1, args.steps // 10)

    def report(step: int, loss: float) -> None:
        if not args.quiet and (step % every == 0 or step == args.steps):
            print(f"  step {step:5d}/{args.steps}  distance {loss:.4f}", flush=True)

    start = time.time()
    proj = project(gen, target, steps=args.steps, seed=args.seed, optimize_noise=not args.fixed_noise,
                   callback=report)
    meta = _meta(gen, args, "seed", "steps", source=Path(args.image).name, optimize_noise=not args.fixed_noise)
    paths = save_projection(gen, proj, out, force=args.force, image_path=args.image, meta=meta)
    print(f"projected {args.image} in {args.steps} steps ({time.time() - start:.0f}s): distance "
          f"{proj.initial_loss:.4f} -> {proj.final_loss:.4f} ({proj.loss_kind})")
    for p in paths.values():
        print(f"  {p}")


def cmd_attention(args) -> None:
    from . import attention_tools as A
    from .sampling import load

    out = _png_out(args)
    gen = load(args.run, device=args.device)
    res, _ = A.attention_layer(gen, args.layer)  # the clear errors (no attention, no such layer) before any work
    points = args.points or list(A.DEFAULT_POINTS)
    cells = A.query_cells(points, res, res)
    A.save_attention_figure(gen, args.seeds, out, points, labels=args.cls, layer=res, force=args.force,
                            meta=_meta(gen, args, "seeds", "cls", points=points, layer=res))
    where = ", ".join(f"({y:g}, {x:g}) -> cell ({cy}, {cx})" for (y, x), (cy, cx) in zip(points, cells))
    print(f"attention of G's {res}x{res} layer for seeds {','.join(map(str, args.seeds))} (rows) -> {out}")
    print(f"  columns: the image, then the map of each query point (y, x): {where}")


def cmd_eval(args) -> None:
    from .metrics.evaluate import ImageSet, evaluate, load_image_set, to_uint8

    from .train.device import pick_device

    device = pick_device(args.device)
    if device.type == "cuda" and device.index not in (None, 0):
        raise GanforgeError("eval runs its feature extractor on the first GPU; use --device cuda or cpu")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    if args.run and args.fake:
        raise GanforgeError("give a model (RUN_OR_CKPT) or --fake, not both")
    if args.run:
        from .sampling import load

        from .train.budget import check_samples

        gen = load(args.run, device=args.device)
        check_samples(args.n, gen.channels, gen.resolution)
        if gen.translates:  # held-out pairs: L1 to the truth, and the outputs' FID against the truths
            from .metrics.translation import translation_metrics

            if args.real or args.fake:
                raise GanforgeError("a translation model is judged on held-out pairs: give --data (paired data) "
                                    "and --split, not --real/--fake")
            result = translation_metrics(gen, args.data, args.split, args.n, args.seed, metrics, args.extractor,
                                         args.kid_subset_size, str(device))
            print(json.dumps(result, indent=1))
            return
        fake = ImageSet(to_uint8(gen.sample(args.n, seed=args.seed), "samples"),
                        f"{gen.cfg.model} samples ({gen.source})", gen.cfg.data.name)
        ref = args.real or args.data or gen.cfg.data.name
        resolution = gen.resolution
    elif args.fake:
        if not (args.real or args.data):
            raise GanforgeError("--fake needs a reference: --real NAME_OR_PATH")
        fake = load_image_set(args.fake, n=args.n, seed=args.seed)
        ref = args.real or args.data
        resolution = fake.images.shape[-1]
    else:
        raise GanforgeError("nothing to evaluate: give RUN_OR_CKPT, or --fake PATH with --real NAME_OR_PATH")
    real = load_image_set(ref, n=args.n, split=args.split, resolution=resolution, seed=args.seed)
    result = evaluate(fake, real, metrics, args.extractor, args.kid_subset_size, args.inception_weights,
                      str(device))
    if args.run and gen.conditional:  # does each class come out as that class? Where a domain classifier knows them
        from .metrics.domain import class_accuracy
        from .metrics.extractors import DOMAIN

        if gen.cfg.data.name in DOMAIN.values() and ref == gen.cfg.data.name:
            result["class_accuracy"] = class_accuracy(gen, gen.cfg.data.name, max(1, args.n // gen.num_classes),
                                                      args.seed)
    print(json.dumps(result, indent=1))


def cmd_translate(args) -> None:
    import numpy as np
    import torch

    from .data.sources import IMAGE_EXTENSIONS, _image_files, _read_errors, _to_array, to_unit_range
    from .provenance import png_info
    from .sampling import load
    from .viz import to_hwc_uint8, to_pil

    src, out = Path(args.input), Path(args.out)
    if not src.exists():
        raise GanforgeError(f"--input {src} does not exist")
    if _looks_like_file(out):
        raise GanforgeError(f"--out {out} looks like a file; it must be a folder")
    gen = load(args.run, device=args.device)
    if not gen.translates:
        raise GanforgeError(f"{args.run} is a {gen.cfg.model}: it translates no images (ganforge sample draws it); "
                            f"translation needs an image-to-image model such as pix2pix")
    if args.no_dropout:
        for m in gen.net.modules():
            if hasattr(m, "at_test"):
                m.at_test = False
    if src.is_dir():
        files = _image_files(src)
        if not files:
            raise GanforgeError(f"no images in {src} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
        targets = [out / p.relative_to(src).with_suffix(".png") for p in files]
    else:
        files, targets = [src], [out / (src.stem + ".png")]
    _check_free(targets, args.force)
    from PIL import Image

    done, bad = 0, []
    for i, (f, target) in enumerate(zip(files, targets)):
        try:
            with Image.open(f) as img:
                img.load()
                arr = _to_array(img, gen.channels)
        except _read_errors() as e:
            if not src.is_dir():
                raise GanforgeError(f"{f} cannot be read as an image ({type(e).__name__}: {e})") from None
            bad.append(f"{f.name} ({type(e).__name__})")
            continue
        x = to_unit_range(torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None])
        y = gen.translate(x, seed=args.seed + i)
        shown = torch.cat([x.expand(-1, y.shape[1], -1, -1), y], -1) if args.compare else y
        target.parent.mkdir(parents=True, exist_ok=True)
        arr = to_hwc_uint8(shown)[0]
        meta = _meta(gen, args, seed=args.seed + i, source=f.name, dropout=not args.no_dropout)
        to_pil(arr).save(target, pnginfo=png_info(meta))
        done += 1
    if bad:
        print(f"ganforge translate: skipped {len(bad)} unreadable file(s): {', '.join(bad[:5])}"
              f"{' ...' if len(bad) > 5 else ''}", file=sys.stderr)
    print(f"{done} image(s) translated by {gen.cfg.model} ({gen.resolution}px) -> {out}/")


def cmd_evolution(args) -> int:
    from .evolution import run

    return run(args)


def cmd_export(args) -> None:
    from .sampling import export

    print(f"exported -> {export(args.run, args.out, overwrite=args.force)}")


def cmd_bench(args) -> None:
    from .bench.speed import main as bench

    bench(args.rest, prog="ganforge bench")


def cmd_serve(args) -> None:
    try:
        from .serve import Limits, serve
    except ImportError as e:  # fastapi and uvicorn are dependencies; a broken install says which is missing
        raise GanforgeError(f"serve needs fastapi and uvicorn ({e}); pip install fastapi uvicorn") from None
    serve(args.runs, host=args.host, port=args.port, device=args.device,
          limits=Limits(cache_bytes=int(args.cache_mib * 2**20)))


VERBS = {"models": cmd_models, "data": cmd_data, "train": cmd_train, "sample": cmd_sample,
         "interpolate": cmd_interpolate, "truncation": cmd_truncation, "mix": cmd_mix, "variation": cmd_variation,
         "project": cmd_project, "attention": cmd_attention, "eval": cmd_eval, "translate": cmd_translate,
         "serve": cmd_serve, "bench": cmd_bench, "evolution": cmd_evolution, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        args = argparse.Namespace(version=False, verb="bench", rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"ganforge {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return 2
    if args.verb == "data" and not args.data_verb:
        args.data_verb = "list"
    try:
        return VERBS[args.verb](args) or 0
    except GanforgeError as e:
        print(f"ganforge {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output the system refuses (a full disk, no permission, a file where a folder goes)
        where = f" {e.filename}" if e.filename else ""
        print(f"ganforge {args.verb}: error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganforge {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
