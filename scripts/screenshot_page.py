"""A screenshot of the page for the README: `ganforge serve` over the given runs, driven by Playwright.

    python scripts/screenshot_page.py RUN_OR_CKPT... [--seed 7] [--out docs/images/serve.png]

The first run is shown; where it has them, the interpolation plays and the style-mixing figure is drawn; a
translator gets a T-shirt outline drawn on its pad and translated.
Needs chromium (Debian's `chromium`, or GANFORGE_CHROMIUM=path).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seed", default="7")
    ap.add_argument("--out", type=Path, default=Path("docs/images/serve.png"))
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--panel", help="only this element (a CSS selector, e.g. #translate-box)")
    args = ap.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from ganforge.serve import create_app, load_models

    app = create_app(load_models(args.runs))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    browser_path = os.environ.get("GANFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True)
        page = browser.new_context(bypass_csp=True, viewport={"width": args.width, "height": 900}).new_page()
        page.goto(f"http://127.0.0.1:{port}/?seed={args.seed}")
        page.wait_for_function("() => document.querySelector('#main').naturalWidth > 0 || "
                               "!document.querySelector('#translate-box').hidden")
        if page.is_visible("#translate-box"):  # a translator: draw a T-shirt's outline and translate it
            box = page.locator("#draw").bounding_box()
            shirt = [(88, 40), (168, 40), (216, 84), (192, 112), (172, 96), (172, 216), (84, 216), (84, 96),
                     (64, 112), (40, 84), (88, 40)]
            page.mouse.move(box["x"] + shirt[0][0], box["y"] + shirt[0][1])
            page.mouse.down()
            for x, y in shirt[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
            page.mouse.up()
            page.click("#draw-go")
            page.wait_for_function("() => document.getElementById('upload-out').naturalWidth > 0")
        if page.is_visible("#interp-box"):
            page.click("#interp-form button")
            page.wait_for_function("() => document.getElementById('interp-strip').naturalWidth > 0")
        if page.is_visible("#mix-box"):
            page.click("#mix-form button")
            page.wait_for_function("() => document.getElementById('mix-img').naturalWidth > 0")
        page.wait_for_timeout(500)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.panel:
            page.locator(args.panel).screenshot(path=str(args.out))
        else:
            page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
