"""A labelled colour dataset rendered from files Debian already ships: the Noto Color Emoji font
(`fonts-noto-color-emoji`) gives the pictures, Unicode's emoji-test.txt (`unicode-data`) gives the labels
(its `# group:` lines: "Smileys & Emotion", "Animals & Nature", ...).

`render_emoji_folder` writes `<out>/<group-slug>/<codepoints>.png`, one RGB square per emoji over white; the
folder appears all at once (rendered next to `out`, then renamed into place), so an interrupted run never
leaves half a dataset. Multi-code-point emoji (ZWJ families, flags, keycaps) render as one picture only with
Pillow's Raqm layout (libraqm, present in the PyPI wheels); without it they come out as their parts and are
skipped (counted in "skipped"). `ensure_emoji(cache, size)` is the named dataset `emoji`: it renders once into
`cache/emoji-<size>` and reuses the folder while its completion marker is there.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..registry import GanforgeError

FONT_ENV = "GANFORGE_EMOJI_FONT"
EMOJI_TEST_ENV = "GANFORGE_EMOJI_TEST"

FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",              # Debian, Ubuntu (fonts-noto-color-emoji)
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",  # Fedora, RHEL
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",                       # Arch (noto-fonts-emoji), Alpine
    "/usr/share/fonts/truetype/NotoColorEmoji.ttf",                   # openSUSE (noto-coloremoji-fonts)
    "/usr/share/fonts/noto-emoji/NotoColorEmoji.ttf",                 # Gentoo, Void
    "/usr/local/share/fonts/NotoColorEmoji.ttf",                      # installed by hand
    "~/.local/share/fonts/NotoColorEmoji.ttf",
    "~/.fonts/NotoColorEmoji.ttf",
)
EMOJI_TEST_PATHS = (
    "/usr/share/unicode/emoji/emoji-test.txt",       # Debian, Ubuntu (unicode-data); Fedora, Arch (unicode-emoji)
    "/usr/share/unicode-data/emoji/emoji-test.txt",
    "/usr/share/unicode/emoji-test.txt",
    "/usr/local/share/unicode/emoji/emoji-test.txt",
)

NATIVE_SIZE = 109            # CBDT colour bitmap fonts load only at their strike size
SKIN_TONES = range(0x1F3FB, 0x1F400)
SKIPPED_GROUPS = ("Component",)
MARKER = ".emoji-complete.json"  # written last, inside the folder, before it is renamed into place


def find_font() -> Path:
    """NotoColorEmoji.ttf: `$GANFORGE_EMOJI_FONT` if set (and only there), else the first of FONT_PATHS."""
    override = os.environ.get(FONT_ENV)
    candidates = [Path(override).expanduser()] if override else [Path(p).expanduser() for p in FONT_PATHS]
    for path in candidates:
        if path.is_file():
            return path
    where = f"${FONT_ENV}={override}" if override else ", ".join(str(p) for p in candidates)
    raise GanforgeError(
        f"Noto Color Emoji font not found (looked in {where}); install it with "
        f"`apt-get install fonts-noto-color-emoji` (Fedora: google-noto-color-emoji-fonts, Arch: "
        f"noto-fonts-emoji) or point ${FONT_ENV} at NotoColorEmoji.ttf")


def find_emoji_test() -> Path | None:
    """emoji-test.txt: `$GANFORGE_EMOJI_TEST` if set (and only there), else the first of EMOJI_TEST_PATHS."""
    override = os.environ.get(EMOJI_TEST_ENV)
    candidates = [override] if override else EMOJI_TEST_PATHS
    for p in candidates:
        path = Path(p).expanduser()
        if path.is_file():
            return path
    return None


def _require_emoji_test() -> Path:
    path = find_emoji_test()
    if path is None:
        override = os.environ.get(EMOJI_TEST_ENV)
        where = f"${EMOJI_TEST_ENV}={override}" if override else ", ".join(EMOJI_TEST_PATHS)
        raise GanforgeError(
            f"emoji-test.txt (the emoji labels) not found (looked in {where}); install it with "
            f"`apt-get install unicode-data` or point ${EMOJI_TEST_ENV} at emoji-test.txt")
    return path


def read_emoji_groups(path) -> list[tuple[str, str]]:
    """(emoji, group) for every fully-qualified line of an emoji-test.txt, in file order. The "Component"
    group (bare skin tones, hair styles) and skin-tone variants (U+1F3FB..U+1F3FF) are left out: the
    variants would be near-duplicates of their base emoji."""
    out: list[tuple[str, str]] = []
    group = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                m = re.match(r"#\s*group:\s*(.+)", line)
                if m:
                    group = m.group(1).strip()
                continue
            if not line or ";" not in line or group is None or group in SKIPPED_GROUPS:
                continue
            fields, _, status = line.partition(";")
            if status.split("#", 1)[0].strip() != "fully-qualified":
                continue
            try:
                cps = [int(c, 16) for c in fields.split()]
            except ValueError:
                continue
            if not cps or any(c in SKIN_TONES for c in cps):
                continue
            out.append(("".join(map(chr, cps)), group))
    return out


def group_slug(group: str) -> str:
    """"Smileys & Emotion" -> "smileys-and-emotion" (a folder name safe everywhere)."""
    return re.sub(r"[^a-z0-9]+", "-", group.lower().replace("&", " and ")).strip("-")


def codepoint_name(emoji: str) -> str:
    """"👍" -> "1f44d"; sequences join with "-" (Noto's own file names)."""
    return "-".join(f"{ord(c):x}" for c in emoji)


class _Renderer:
    """One emoji at a time: the font's colour bitmap, cropped, centred in a square over white, resized."""

    def __init__(self, font_path: Path, size: int):
        from PIL import Image, ImageDraw, ImageFont

        self.Image, self.ImageDraw, self.size = Image, ImageDraw, size
        try:
            self.font = ImageFont.truetype(str(font_path), NATIVE_SIZE)
        except OSError as e:
            raise GanforgeError(
                f"Pillow cannot read {font_path} at size {NATIVE_SIZE} ({e}); a colour bitmap (CBDT) font needs "
                f"Pillow built with FreeType 2.5+ and PNG support") from None
        # one glyph's advance: a sequence the font lacks falls apart into several glyphs, wider than this
        self.advance = self.font.getlength("\U0001F600")
        self.canvas = (int(self.advance * 4) + 16, NATIVE_SIZE * 2)
        self.notdef = self._draw("\U000F0000")  # a private-use code point no emoji font maps: its tofu

    def _draw(self, emoji: str):
        img = self.Image.new("RGBA", self.canvas, (0, 0, 0, 0))
        self.ImageDraw.Draw(img).text((4, 4), emoji, font=self.font, embedded_color=True)
        return img

    def render(self, emoji: str):
        """The RGB size x size image, or None when the font has no glyph for `emoji` (blank, tofu, or a
        sequence drawn as its separate parts)."""
        if self.font.getlength(emoji) > self.advance * 1.25:
            return None
        img = self._draw(emoji)
        bbox = img.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
        if bbox is None:
            return None
        if self.notdef.getbbox() is not None and img.tobytes() == self.notdef.tobytes():
            return None
        glyph = img.crop(bbox)
        w, h = glyph.size
        if min(w, h) < 4:
            return None
        side = max(w, h)
        square = self.Image.new("RGBA", (side, side), (255, 255, 255, 255))
        square.alpha_composite(glyph, ((side - w) // 2, (side - h) // 2))
        rgb = square.convert("RGB").resize((self.size, self.size), self.Image.LANCZOS)
        lo, hi = zip(*rgb.getextrema())
        if max(hi) - min(lo) < 16:   # flat: nothing drawn worth keeping
            return None
        return rgb


def _round_robin(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Interleave groups (each keeps its file order) so the first `limit` emoji span every group."""
    by_group: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        by_group.setdefault(item[1], []).append(item)
    queues = list(by_group.values())
    out, i = [], 0
    while any(i < len(q) for q in queues):
        out.extend(q[i] for q in queues if i < len(q))
        i += 1
    return out


def render_emoji_folder(out: Path, size: int = 64, limit: int | None = None) -> dict:
    """Render every labelled emoji the font has into `out/<group-slug>/<codepoints>.png` (RGB, size x size).
    `limit` keeps the first `limit` images, taken in turn from each group so a small sample spans them all.
    The folder is built next to `out` and renamed into place when finished (replacing an older `out`).
    Returns {"folder", "images", "groups": {group: count}, "skipped"}."""
    out = Path(out)
    if size < 1:
        raise GanforgeError(f"emoji size must be positive, got {size}")
    font = find_font()
    labels = read_emoji_groups(_require_emoji_test())
    if limit is not None:
        labels = _round_robin(labels)
    renderer = _Renderer(font, size)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        groups: dict[str, int] = {}
        skipped: list[str] = []
        images = 0
        for emoji, group in labels:
            if limit is not None and images >= limit:
                break
            img = renderer.render(emoji)
            if img is None:
                skipped.append(codepoint_name(emoji))
                continue
            folder = tmp / group_slug(group)
            folder.mkdir(exist_ok=True)
            img.save(folder / f"{codepoint_name(emoji)}.png", optimize=False)
            groups[group] = groups.get(group, 0) + 1
            images += 1
        if images == 0:
            raise GanforgeError(f"no emoji could be rendered from {font} (every glyph came out blank)")
        summary = {"folder": str(out), "images": images, "groups": groups, "skipped": len(skipped)}
        (tmp / MARKER).write_text(json.dumps(
            {**summary, "size": size, "limit": limit, "font": str(font), "skipped_codepoints": skipped},
            indent=1, ensure_ascii=False))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if (out / MARKER).is_file():   # another process finished the same folder first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def emoji_complete(folder: Path) -> dict | None:
    """The summary of a finished, full (no `limit`) render in `folder`, or None."""
    try:
        info = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("limit") is None else None


def ensure_emoji(cache: Path, size: int = 64) -> Path:
    """The named dataset `emoji`: `cache/emoji-<size>`, rendered on first use."""
    folder = Path(cache) / f"emoji-{size}"
    if emoji_complete(folder) is None:
        render_emoji_folder(folder, size=size)
    return folder
