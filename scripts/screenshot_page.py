"""A screenshot of the page for the README: `ganforge serve` over the given runs, driven by Playwright.

    python scripts/screenshot_page.py RUN_OR_CKPT... [--seed 7] [--out docs/images/serve.png]

The first run is shown; where it has them, the interpolation plays and the style-mixing figure is drawn.
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
        page.wait_for_function("() => document.getElementById('main').naturalWidth > 0")
        if page.is_visible("#interp-box"):
            page.click("#interp-form button")
            page.wait_for_function("() => document.getElementById('interp-strip').naturalWidth > 0")
        if page.is_visible("#mix-box"):
            page.click("#mix-form button")
            page.wait_for_function("() => document.getElementById('mix-img').naturalWidth > 0")
        page.wait_for_timeout(500)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
