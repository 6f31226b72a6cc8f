"""The evolution report: one self-contained HTML page (images inline) and its Markdown twin (images beside it in
images/), from the rows `ganforge.evolution.measure` wrote. Every sentence in it is computed from the numbers."""
from __future__ import annotations

import base64
import html
import os
import platform
import time
from pathlib import Path

from .registry import arxiv_year, get_model

LOWER = ("fid", "kid")  # lower is better; precision, recall and coverage: higher


def _year(model: str) -> int | None:
    return arxiv_year(get_model(model))


def _paper(model: str) -> tuple[str, str]:
    """(citation, link) from the registry's "Authors Year, Title, link"."""
    text = get_model(model).paper
    cite, _, link = text.rpartition(", ")
    return (cite, link) if link.startswith("http") else (text, "")


def _m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _k(n: int | None) -> str:
    return "-" if n is None else (f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k")


def _mmss(s: float) -> str:
    s = round(s)
    return f"{s // 60}:{s % 60:02d}"


def _best(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return None
    return min(vals) if key in LOWER else max(vals)


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The numbers, one row per model; the best value of each quality column marked with ** (bold)."""
    cover = any("classes_covered" in r for r in rows)
    head = ["model", "arXiv", "FID", "KID", "precision", "recall", *(["classes covered"] if cover else []),
            "G params", "D params", "steps", "images shown", "img/s", "training time", "threads"]
    best = {k: _best(rows, k) for k in ("fid", "kid", "precision", "recall")}
    out = []
    for r in rows:
        def q(key, fmt):
            v = fmt(r[key])
            return f"**{v}**" if r[key] == best[key] else v
        cells = [f"`{r['model']}`" + (" (conditional)" if r.get("conditional") else ""), str(_year(r["model"]) or "-"),
                 q("fid", lambda v: f"{v:.2f}"), q("kid", lambda v: f"{v:.4f}") + f" ± {r['kid_std']:.4f}",
                 q("precision", lambda v: f"{v:.3f}"), q("recall", lambda v: f"{v:.3f}")]
        if cover:
            cells.append(f"{r['classes_covered']} of {r['classes']}"
                         if "classes_covered" in r else "-")
        cells += [_m(r["params_g"]), _m(r["params_d"]), f"{r['step']:,}", _k(r["nimg"]),
                  f"{r['img_per_s']:.0f}" if r.get("img_per_s") else "-", _mmss(r["train_seconds"]),
                  str(r.get("threads") or "-")]
        out.append(cells)
    return head, out


def reading(rows: list[dict], job: dict) -> list[str]:
    """What the numbers say, in sentences: the winner, and every later generation that trails an earlier one
    here, with why (images shown, cost per image, time spent growing)."""
    if not rows:
        return []
    by_fid = sorted(rows, key=lambda r: r["fid"])
    first = by_fid[0]
    order = ", ".join(f"`{r['model']}` {r['fid']:.2f}" for r in by_fid)
    says = [f"Lowest FID at {job['minutes_per_model']:g} minutes: `{first['model']}` ({first['fid']:.2f}); the order "
            f"is {order}."]
    chrono = sorted(rows, key=lambda r: (get_model(r["model"]).arxiv or "99", r["model"]))
    for i, r in enumerate(chrono):
        earlier = [e for e in chrono[:i] if e["fid"] < r["fid"]]
        if not earlier:
            continue
        e = min(earlier, key=lambda x: x["fid"])
        why = [f"`{r['model']}` ({_year(r['model'])}) trails `{e['model']}` ({_year(e['model'])}) here: FID "
               f"{r['fid']:.2f} against {e['fid']:.2f}."]
        if r.get("nimg") and e.get("nimg"):
            ratio = e["nimg"] / r["nimg"]
            why.append(f"In the same time it showed D {_k(r['nimg'])} images ({r['img_per_s']:.0f} img/s) to "
                       f"{_k(e['nimg'])} ({e['img_per_s']:.0f} img/s)" +
                       (f", {ratio:.1f} times fewer" if ratio >= 1.15 else "") + ".")
            if ratio >= 1.15:
                why.append(f"Its G and D hold {_m(r['params_g'] + r['params_d'])} parameters to "
                           f"{_m(e['params_g'] + e['params_d'])}.")
        if r.get("grown_at_nimg") and r.get("nimg"):
            share = r["grown_at_nimg"] / r["nimg"]
            why.append(f"It grows: {share:.0%} of its images went to the smaller stages before it reached "
                       f"{r['resolution']}x{r['resolution']}, leaving {_k(r['nimg'] - r['grown_at_nimg'])} at the "
                       f"final size.")
        elif "grown_at_nimg" in r and r["grown_at_nimg"] is None:
            why.append(f"It had not finished growing to {r['resolution']}x{r['resolution']} when the time ran out.")
        says.append(" ".join(why))
    cond = [r for r in rows if r.get("conditional")]
    for r in cond:
        says.append(f"`{r['model']}` trained class-conditional, as in its paper (the data has classes), and its "
                    f"samples draw the classes uniformly: that helps its class coverage and recall against the "
                    f"unconditional models.")
    if len(rows) > 1 and all(r.get("classes_covered") for r in rows):
        low = [r for r in rows if r["classes_covered"] < r["classes"]]
        if low:
            says.append("Classes missing from the samples (mode dropping; fewer than 1% of samples in a class): " +
                        ", ".join(f"`{r['model']}` covers {r['classes_covered']}" for r in low) + ".")
    return says


def _setup(job: dict, rows: list[dict], again: str) -> str:
    import torch

    from . import __version__

    threads = sorted({r.get("threads") for r in rows if r.get("threads")})
    ref = rows[0] if rows else {}
    return (f"Every model trained for {job['minutes_per_model']:g} minutes of wall time on {job['data']} at "
            f"{job['resolution']}x{job['resolution']}, from seed {job['seed']}, with its paper's recipe (scaled to "
            f"a CPU where the model has a CPU preset), on {platform.machine()} with {os.cpu_count()} CPU threads, "
            f"{' / '.join(map(str, threads)) or '?'} thread(s) per model. Each is judged on {ref.get('n', '?')} "
            f"samples of its EMA generator against the same reference images, with the `{ref.get('extractor', '?')}` "
            f"features (FID, KID, precision/recall at k = 3; classes covered: classes the domain classifier sees in "
            f"at least 1% of the samples). Made by `{again}` with ganforge {__version__}, torch {torch.__version__}, "
            f"on {time.strftime('%Y-%m-%d')}.")


def _img(path: Path) -> str:
    """The image as a data: URL, re-encoded as WebP (animated for a GIF): the page stays one small file."""
    import io

    from PIL import Image, ImageSequence, features

    if not features.check("webp"):  # a Pillow without WebP: the file as it is
        mime = "image/gif" if path.suffix == ".gif" else "image/png"
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
    buf = io.BytesIO()
    with Image.open(path) as im:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(im)]
        durations = [f.info.get("duration", 150) for f in ImageSequence.Iterator(im)]
    if len(frames) > 1:
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       quality=85, method=4)
    else:
        frames[0].save(buf, format="WEBP", quality=90, method=4)
    return f"data:image/webp;base64,{base64.b64encode(buf.getvalue()).decode()}"


def write_report(out: Path, job: dict, rows: list[dict], models: list[str], failed: dict[str, str],
                 again: str) -> tuple[Path, Path]:
    from .train.checkpoint import atomic_write_bytes

    title = (f"The evolution of GANs, measured: {job['data']} at {job['resolution']}x{job['resolution']}, "
             f"{job['minutes_per_model']:g} minutes per model")
    head, cells = table(rows)
    says = reading(rows, job)
    setup = _setup(job, rows, again)
    images = out / "images"

    # Markdown
    md = [f"# {title}", "", setup, "", "## Samples", ""]
    md += ["| " + " | ".join(f"`{r['model']}` ({_year(r['model'])})" for r in rows) + " |",
           "|" + "---|" * len(rows),
           "| " + " | ".join(f"![{r['model']}](images/{r['model']}.png)" for r in rows) + " |", ""]
    md += ["## Numbers", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c) + " |" for c in cells]
    md += ["", "Bold: the best of the column. FID and KID: lower is better; precision (samples that look like the "
           "data) and recall (data the samples cover): higher is better.", "", "## Reading the numbers", ""]
    md += [f"- {s}" for s in says]
    gifs = [r for r in rows if r.get("gif")]
    if gifs:
        md += ["", "## Learning in progress", "", "The same latents over training, each frame a sample grid of the "
               "run (growing models: every stage upscaled to the final size).", ""]
        md += ["| " + " | ".join(f"`{r['model']}`" for r in gifs) + " |", "|" + "---|" * len(gifs),
               "| " + " | ".join(f"![{r['model']} learning](images/{r['model']}-progress.gif)" for r in gifs) + " |"]
    md += ["", "## What each generation added", ""]
    for m in models:
        cite, link = _paper(m)
        md += [f"**`{m}`** ({_year(m)}; [{cite}]({link})). {get_model(m).added}", ""]
    if failed:
        md += ["## Not finished", ""] + [f"- `{m}`: {why.splitlines()[0]}" for m, why in failed.items()] + [""]
    md_path = out / "report.md"
    atomic_write_bytes(md_path, ("\n".join(md).rstrip() + "\n").encode())

    # HTML (self-contained: the images inline)
    e = html.escape

    def inline_md(s: str) -> str:  # `code` and **bold** only
        import re

        s = e(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    figures = "".join(
        f"<figure><img src=\"{_img(images / (r['model'] + '.png'))}\" alt=\"{e(r['model'])} samples\">"
        f"<figcaption><code>{e(r['model'])}</code> ({_year(r['model'])}) &middot; FID {r['fid']:.2f}</figcaption>"
        f"</figure>" for r in rows)
    films = "".join(
        f"<figure><img src=\"{_img(images / (r['model'] + '-progress.gif'))}\" alt=\"{e(r['model'])} learning\">"
        f"<figcaption><code>{e(r['model'])}</code></figcaption></figure>" for r in gifs)
    thead = "".join(f"<th>{e(h)}</th>" for h in head)
    tbody = "".join("<tr>" + "".join(f"<td>{inline_md(c)}</td>" for c in row) + "</tr>" for row in cells)
    papers = "".join(
        f"<p><b><code>{e(m)}</code></b> ({_year(m)}; <a href=\"{e(_paper(m)[1])}\">{e(_paper(m)[0])}</a>). "
        f"{e(get_model(m).added)}</p>" for m in models)
    unfinished = "".join(f"<li><code>{e(m)}</code>: {e(why.splitlines()[0])}</li>" for m, why in failed.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; text-align: center; }}
figure img {{ width: 260px; image-rendering: pixelated; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ border: 1px solid #ccc; padding: 3px 7px; }}
th {{ background: #f4f4f4; }} td {{ text-align: right; }} td:first-child {{ text-align: left; }}
code {{ background: #f4f4f4; padding: 0 3px; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{inline_md(setup)}</p>
<h2>Samples</h2><div class="grid">{figures}</div>
<h2>Numbers</h2><table><thead><tr>{thead}</tr></thead><tbody>{tbody}</tbody></table>
<p>Bold: the best of the column. FID and KID: lower is better; precision (samples that look like the data) and
recall (data the samples cover): higher is better.</p>
<h2>Reading the numbers</h2><ul>{''.join(f'<li>{inline_md(s)}</li>' for s in says)}</ul>
{f'<h2>Learning in progress</h2><div class="grid">{films}</div>' if gifs else ''}
<h2>What each generation added</h2>{papers}
{f'<h2>Not finished</h2><ul>{unfinished}</ul>' if failed else ''}
</body></html>
"""
    html_path = out / "report.html"
    atomic_write_bytes(html_path, page.encode())
    return html_path, md_path
