"""The docs cannot rot: every command they show is checked, and run.

What counts as a command: every line of a ```bash block and every ```python block in README.md, README.ja.md and
docs/**/*.md (illustrations that cannot run here, such as a cluster's command line, go in ```text blocks).

- Fast (make test): every `ganforge` line parses with the real command-line parser, every `make` target exists,
  every Python block compiles, and README.ja.md shows exactly README.md's commands.
- Slow (make test-slow): each page's commands run, in order (shell lines, then Python blocks), in a fresh folder, on the machine's real data, with
  the budgets shrunk (a few seconds of training instead of minutes; fewer samples to evaluate); a page's later
  commands use the runs its earlier ones made. The user's own folders the docs name (~/my-photos, ~/facades, ...)
  are stand-ins made here. `make` lines are checked with `make -n` (they are the set-up and the benchmarks); a
  line for a GPU is skipped without one; `ganforge serve` is started, asked /health, and stopped.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(p for p in [ROOT / "README.ja.md"] if p.exists()),
                *(ROOT / "docs").rglob("*.md")])
NOT_RUN = ("pip", "apt-get", "sudo", "git", "cd", "export", "source", "tensorboard")  # set-up, not ganforge's
SHRUNK_MINUTES = "0.05"


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """(kind, line number, text) of the page's ```bash and ```python blocks, in order."""
    text = page.read_text()
    out = []
    for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        kind = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}.get(m.group(1))
        if kind:
            out.append((kind, text[: m.start()].count("\n") + 2, m.group(2)))
    return out


def commands(page: Path) -> list[tuple[str, int, str]]:
    """(kind, line, command): each shell line of a bash block (continuations joined, comments dropped), each
    python block whole."""
    out = []
    for kind, line, text in blocks(page):
        if kind == "python":
            out.append(("python", line, text))
            continue
        pending, start = "", line
        for i, raw in enumerate(text.splitlines()):
            if not pending:
                start = line + i
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            full = (pending + raw).strip()
            pending = ""
            tokens = shlex.split(full, comments=True)
            if tokens:
                out.append(("bash", start, shlex.join(tokens) if "|" not in tokens else _strip_comment(full)))
    return out


def _strip_comment(line: str) -> str:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return " ".join(t if t in ("|", "&&", "||", ";") else shlex.quote(t) for t in lex)


def _program(tokens: list[str]) -> tuple[str, list[str]]:
    """('ganforge', its arguments) for `ganforge ...`, `python -m ganforge ...`, `torchrun ... -m ganforge ...`
    (with VAR=value prefixes); else (the program, the rest)."""
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return "", []
    if tokens[0] == "ganforge":
        return "ganforge", tokens[1:]
    if "-m" in tokens and tokens[tokens.index("-m") + 1: tokens.index("-m") + 2] in (["ganforge"], ["ganforge.cli"]):
        return "ganforge", tokens[tokens.index("-m") + 2:]
    return Path(tokens[0]).name, tokens[1:]


def _all_commands():
    return [pytest.param(page, kind, line, cmd, id=f"{page.relative_to(ROOT)}:{line}")
            for page in PAGES for kind, line, cmd in commands(page)]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


# ------------------------------------------------------------------------------------------ fast

def test_the_docs_show_commands():
    found = {p.name for p in PAGES if commands(p)}
    assert "README.md" in found and len(_all_commands()) > 30


@pytest.mark.parametrize("page, kind, line, cmd", _all_commands())
def test_every_command_in_the_docs_is_well_formed(page, kind, line, cmd):
    if kind == "python":
        compile(cmd, f"{page}:{line}", "exec")
        return
    for part in re.split(r"\s(?:\|\||&&|\||;)\s", cmd):
        program, args = _program(shlex.split(part))
        if program == "ganforge":
            from ganforge.cli import build_parser

            if args[:1] == ["bench"]:
                from ganforge.bench.speed import parser as bench_parser

                bench_parser().parse_args(args[1:])
            else:
                build_parser().parse_args(args)  # exits (status 2) with argparse's message on a bad line
        elif program == "make":
            targets = [a for a in args if not a.startswith("-") and "=" not in a]
            assert set(targets) <= _make_targets(), f"{page}:{line}: no make target {set(targets) - _make_targets()}"


def test_the_japanese_readme_shows_the_same_commands():
    ja = ROOT / "README.ja.md"
    if not ja.exists():
        pytest.fail("README.ja.md is missing")
    en = [c for k, _, c in commands(ROOT / "README.md") if k == "bash"]
    assert [c for k, _, c in commands(ja) if k == "bash"] == en


# ------------------------------------------------------------------------------------------ slow: run them

def _stand_ins(home: Path, work: Path) -> None:
    """The user's folders and files the docs name, made from the emoji (RGB) and a few drawn shapes."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)

    def picture(size=64):
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 256, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(3):
            x0, y0 = rng.integers(0, size - 16, 2)
            w, h = rng.integers(8, 32, 2)
            d.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
        return im

    for name in ("my-photos", "photos", "few-photos"):
        (home / name).mkdir(parents=True)
        for i in range(160):  # more than a batch
            picture().save(home / name / f"{i:03d}.png")
    for c in ("cats", "dogs", "birds"):
        (home / "my-classes" / c).mkdir(parents=True)
        for i in range(48):
            picture().save(home / "my-classes" / c / f"{i:03d}.png")
    for split in ("train", "test"):  # pix2pix's A|B layout
        (home / "facades" / split).mkdir(parents=True)
        for i in range(40):
            a, b = picture(), picture()
            pair = Image.new("RGB", (128, 64))
            pair.paste(a, (0, 0))
            pair.paste(b, (64, 0))
            pair.save(home / "facades" / split / f"{i:03d}.png")
    picture().save(work / "photo.png")
    (work / "drawings").mkdir()
    for i in range(3):
        im = Image.new("L", (64, 64), 255)
        ImageDraw.Draw(im).rectangle([16, 8 + i * 4, 48, 56], outline=0, width=2)
        im.save(work / "drawings" / f"{i}.png")


def _join(tokens: list[str]) -> str:
    """shlex.join, but ~/... stays unquoted: the shell expands it, as it would for the reader."""
    return " ".join(t if re.fullmatch(r"~/[\w./-]*", t) else shlex.quote(t) for t in tokens)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink(tokens: list[str]) -> list[str] | None:
    """A ganforge command line with its budgets cut to seconds (None: not runnable here)."""
    import torch

    program, args = _program(tokens)
    if program != "ganforge" or not args:
        return tokens
    if "cuda" in " ".join(args) and not torch.cuda.is_available():
        return None
    head = tokens[: len(tokens) - len(args)]
    verb, args = args[0], list(args[1:])

    def set_opt(name, value, only_if_present=False):
        if name in args:
            args[args.index(name) + 1] = value
        elif not only_if_present:
            args.extend([name, value])

    if verb == "train" and "--dry-run" not in args:
        if "--steps" in args:
            i = args.index("--steps") + 1
            args[i] = str(max(2, int(args[i]) // 1000))
        else:
            set_opt("--minutes", SHRUNK_MINUTES)
        if "--eval-every" in args:
            set_opt("--eval-every", "2")
            args += ["--set", "train.eval_n=200"]
    elif verb == "evolution":
        set_opt("--minutes-per-model", SHRUNK_MINUTES)
        set_opt("--n", "200")
    elif verb == "eval":
        set_opt("--n", "1000")  # (KID's subsets are 1000)
    elif verb == "project":
        set_opt("--steps", "3")
    elif verb == "bench":
        set_opt("--steps", "2")
    return head + [verb, *args]


def _run_line(cmd: str, work: Path, env: dict, where: str) -> None:
    parts = re.split(r"\s(\|\||&&|\||;)\s", cmd)
    program, _ = _program(shlex.split(parts[0]))
    if program in NOT_RUN:
        return
    if program == "make":
        proc = subprocess.run(["make", "-n", *shlex.split(parts[0])[1:]], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 0, f"{where}: {cmd}\n{proc.stderr}"
        return
    rebuilt = []
    for i, part in enumerate(parts):
        if i % 2:  # an operator
            rebuilt.append(part)
            continue
        tokens = shrink(shlex.split(part))
        if tokens is None:
            return  # a GPU line without a GPU
        rebuilt.append(_join(tokens))
    line = " ".join(rebuilt)
    program, args = _program(shlex.split(rebuilt[0]))
    if program == "ganforge" and args[:1] == ["serve"]:
        _serve(line, work, env, where)
        return
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{where}: {line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def _serve(line: str, work: Path, env: dict, where: str) -> None:
    tokens = shlex.split(line)
    port = str(_free_port())
    if "--port" in tokens:
        tokens[tokens.index("--port") + 1] = port
    else:
        tokens += ["--port", port]
    proc = subprocess.Popen(tokens, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{where}: {line} exited:\n{proc.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"{where}: {line} did not answer /health in 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if commands(p) and p.name != "README.ja.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_commands_of_each_page_run(page, tmp_path):
    """README.ja.md shows README.md's commands (the fast test checks it): run once."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    _stand_ins(home, work)
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    # the data the machine has, found where the user's would be (a HOME of its own hides ~/.cache/ganforge)
    env.setdefault("GANFORGE_DATA", str(Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "ganforge"))
    # the shell lines first, in order, then the Python blocks (which use the runs the page's commands made)
    for kind, line, cmd in sorted(commands(page), key=lambda c: c[0] == "python"):
        where = f"{page.relative_to(ROOT)}:{line}"
        if kind == "python":
            proc = subprocess.run([sys.executable, "-c", cmd], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"{where}:\n{cmd}\n{proc.stderr[-3000:]}"
        else:
            _run_line(cmd, work, env, where)
