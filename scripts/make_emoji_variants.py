"""Make a folder of colour images that is not the `emoji` dataset, to check that a model trains on a user's
own folder: the same font's emoji drawn smaller (55-85% of the frame), rotated by up to 30 degrees either
way, at a random place on a random pastel background, saved as JPEG (quality 90) in one flat folder (no
labels). Seeded: the same command makes the same folder.

    python scripts/make_emoji_variants.py --out data/emoji-variants [--size 64] [--limit 1500] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from ganforge.data.emoji import _Renderer, _require_emoji_test, _round_robin, find_font, read_emoji_groups


def make(out: Path, size: int = 64, limit: int = 1500, seed: int = 0) -> int:
    from PIL import Image

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=False)
    renderer = _Renderer(find_font(), 2 * size)  # drawn at twice the size, shrunk at the end: clean edges
    items = _round_robin(read_emoji_groups(_require_emoji_test()))
    rng.shuffle(items)
    n = 0
    for emoji, _group in items:
        if n >= limit:
            break
        glyph = renderer.render(emoji)
        if glyph is None:
            continue
        # the renderer composites on white: make white transparent again for placing on a background
        rgba = glyph.convert("RGBA")
        rgba.putalpha(Image.eval(glyph.convert("L"), lambda v: 0 if v > 250 else 255))
        scale = rng.uniform(0.55, 0.85)
        side = max(8, int(2 * size * scale))
        rgba = rgba.resize((side, side), Image.LANCZOS).rotate(rng.uniform(-30, 30), resample=Image.BICUBIC,
                                                             expand=True)
        bg = tuple(rng.randint(190, 250) for _ in range(3))
        canvas = Image.new("RGBA", (2 * size, 2 * size), bg + (255,))
        x = rng.randint(0, max(0, 2 * size - rgba.width))
        y = rng.randint(0, max(0, 2 * size - rgba.height))
        canvas.alpha_composite(rgba, (x, y))
        canvas.convert("RGB").resize((size, size), Image.LANCZOS).save(out / f"{n:05d}.jpg", quality=90)
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"{make(a.out, a.size, a.limit, a.seed)} images -> {a.out}")


if __name__ == "__main__":
    main()
