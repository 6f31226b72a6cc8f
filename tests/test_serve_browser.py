"""The page in a real browser: `ganforge serve` started as a user starts it, driven by Playwright through
Debian's chromium (headless). Skipped where either is missing, except under CI (which installs both)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import serve_runs

playwright = pytest.importorskip("playwright.sync_api")


def chromium() -> str | None:
    return os.environ.get("GANFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


if chromium() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the browser tests (apt-get install chromium)")
    pytest.skip("no chromium here (apt-get install chromium, or set GANFORGE_CHROMIUM)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ganforge serve` in a subprocess on a free loopback port; yields its URL."""
    runs = serve_runs(tmp_path_factory, ["dcgan", "stylegan2", "pix2pix"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    names = {"dcgan": "dcgan", "style": "stylegan2", "csagan": "csagan", "pix2pix": "pix2pix"}
    log = tmp_path_factory.mktemp("serve") / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ganforge.cli", "serve",
                                 *(f"{k}={runs[v]}" for k, v in names.items()), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ganforge serve did not start: {Path(log).read_text()[-2000:]}")
            time.sleep(0.2)
        assert "ganforge serve: 4 model(s)" in Path(log).read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    # the page's own CSP forbids eval; the test's probes (wait_for_function, evaluate) are let through
    context = browser.new_context(bypass_csp=True)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.base, pg.expected = server, []  # expected: console errors a test provokes on purpose
    yield pg
    context.close()
    assert not [e for e in errors if not any(x in e for x in pg.expected)], errors


def pixels(page, selector: str = "#main") -> list[int]:
    """The RGBA pixels of an <img> at its own resolution (not the screen's)."""
    return page.evaluate("""(sel) => {
        const img = document.querySelector(sel), c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
    }""", selector)


def shown(page, seed: str | None = None, selector: str = "#main") -> str:
    """Wait until the image is loaded (for `seed` where given); its seed."""
    page.wait_for_function("""([sel, seed]) => {
        const img = document.querySelector(sel);
        return !img.hidden && img.complete && img.naturalWidth > 0 && (seed === null || img.dataset.seed === seed);
    }""", arg=[selector, seed])
    return page.get_attribute(selector, "data-seed")


def shows(page, needle: str) -> None:
    """Wait until the main image is the one whose request holds `needle` (e.g. "truncation=0")."""
    page.wait_for_function("""(needle) => {
        const img = document.getElementById('main');
        return (img.dataset.query || '').includes(needle) && img.complete && img.naturalWidth > 0;
    }""", arg=needle)


def new_image(page) -> str:
    before = page.get_attribute("#main", "data-seed")
    page.click("#new")
    page.wait_for_function("(s) => document.getElementById('main').dataset.seed !== s", arg=before)
    return shown(page)


def show_seed(page, seed: str) -> None:
    page.fill("#seed", seed)
    page.click("#seed-form button")
    shown(page, seed)


def test_a_new_image_at_every_visit_and_on_new(page):
    page.goto(page.base + "/")
    first = shown(page)
    assert page.is_visible("#main") and "does not exist" in page.inner_text("h1")
    assert "generated" in page.inner_text("#notice").lower()
    image = pixels(page)
    assert len(image) == 16 * 16 * 4
    assert new_image(page) != first and pixels(page) != image
    page.goto(page.base + "/")  # another visit: another image
    assert shown(page) not in (first, None)


def test_a_seed_shows_the_same_image_twice_and_its_link_shares_it(page):
    page.goto(page.base + "/?model=dcgan")
    shown(page)
    show_seed(page, "42")
    image = pixels(page)
    new_image(page)
    assert pixels(page) != image
    show_seed(page, "42")
    assert pixels(page) == image
    link = page.get_attribute("#share", "href")
    assert "seed=42" in link and "model=dcgan" in link
    page.goto(link)
    shown(page, "42")
    assert pixels(page) == image and page.input_value("#seed") == "42"


def test_truncation_slider(page):
    """psi to 0 brings every seed to the average w: two seeds' images then differ only by their noise."""
    page.goto(page.base + "/?model=style&seed=5")
    shown(page, "5")
    assert page.is_visible("#truncation") and page.is_visible("#mix-box")

    def gap(a: list[int], b: list[int]) -> float:
        return sum(abs(x - y) for x, y in zip(a, b)) / len(a)
    free5 = pixels(page)
    show_seed(page, "6")
    free6 = pixels(page)
    page.fill("#truncation", "0")  # a range input: fill sets it and fires input and change
    shows(page, "truncation=0")
    trunc6 = pixels(page)
    show_seed(page, "5")
    trunc5 = pixels(page)
    assert trunc6 != free6
    assert gap(trunc5, trunc6) < 0.5 * gap(free5, free6)
    assert "ψ = 0.00" in page.inner_text("#truncation-value")


def test_controls_follow_the_model(page):
    page.goto(page.base + "/?model=dcgan&seed=1")
    shown(page, "1")
    assert page.is_visible("#truncation") and not page.is_visible("#class-box") and not page.is_visible("#mix-box")
    assert page.is_visible("#model")  # several models served: a picker
    page.select_option("#model", "csagan")
    shows(page, "model=csagan")
    assert page.is_visible("#class-box") and "Trouser" in page.inner_text("#class")
    before = pixels(page)
    page.select_option("#class", "Trouser")
    shows(page, "class=Trouser")
    assert pixels(page) != before
    assert "sagan" in page.inner_text("#card-list") and "arxiv.org" in page.get_attribute("#card-list a", "href")


def test_interpolation_plays(page):
    page.goto(page.base + "/?model=dcgan&seed=3")
    shown(page, "3")
    page.fill("#interp-b", "4")
    page.click("#interp-form button")
    shown(page, None, "#interp-strip")
    width = page.evaluate("() => document.getElementById('interp-strip').naturalWidth")
    assert width == 16 * 24  # 24 frames side by side
    page.wait_for_timeout(400)
    assert page.evaluate("() => document.getElementById('interp-canvas').width") == 16


def test_translation_upload(page, tmp_path):
    import numpy as np
    from PIL import Image

    page.goto(page.base + "/?model=pix2pix")
    page.wait_for_selector("#translate-box:not([hidden])")
    assert not page.is_visible("#main") and not page.is_visible("#truncation")
    drawing = np.full((64, 64), 255, np.uint8)
    drawing[16:48, 20] = drawing[16:48, 44] = drawing[16, 20:45] = drawing[47, 20:45] = 0
    path = tmp_path / "outline.png"
    Image.fromarray(drawing).save(path)
    page.set_input_files("#upload", str(path))
    shown(page, None, "#upload-out")
    assert page.evaluate("() => document.getElementById('upload-out').naturalWidth") == 16
    assert page.inner_text("#status") == ""


def test_bad_input_in_the_page_is_a_message(page):
    page.goto(page.base + "/?model=dcgan&seed=1")
    shown(page, "1")
    page.fill("#seed", "not a seed")
    page.click("#seed-form button")
    assert "whole number" in page.inner_text("#status")
    page.expected.append("status of 422")  # the refused request, as the browser logs it
    page.goto(page.base + "/?model=dcgan&seed=9999999999999999999")  # past 2**63: the server's reason, shown
    page.wait_for_function("() => document.getElementById('status').textContent.length > 0")
    assert "seed" in page.inner_text("#status") and "9223372036854775807" in page.inner_text("#status")


def test_api_docs_render_offline(page):
    """/docs is Swagger UI from the installed package: it renders the operations with no network."""
    page.route("**/*", lambda route: route.abort() if "127.0.0.1" not in route.request.url else route.continue_())
    page.goto(page.base + "/docs")
    page.get_by_text("/api/generate", exact=True).wait_for(timeout=30_000)
    assert page.get_by_text("/api/translate", exact=True).is_visible()


def test_the_page_works_under_its_own_content_security_policy(browser, server):
    """The other tests let their probes past the page's CSP; here the page runs under it, as users get it:
    no inline script or style it depends on, nothing from elsewhere."""
    context = browser.new_context()
    pg = context.new_page()
    errors = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto(server + "/?model=dcgan&seed=3")
    pg.locator('#main[data-seed="3"]').wait_for(state="visible")  # hidden until its PNG has loaded and decoded
    pg.locator("#interp-form button").click()
    pg.locator("#interp-strip").wait_for(state="visible")
    context.close()
    assert not errors, errors


def test_a_drawing_is_translated(page):
    """pix2pix's demo: draw an outline with the mouse, translate it."""
    page.goto(page.base + "/?model=pix2pix")
    page.wait_for_selector("#translate-box:not([hidden])")
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    for x, y in ((196, 60), (196, 200), (60, 200), (60, 60)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    page.mouse.up()
    page.click("#draw-go")
    shown(page, None, "#upload-out")
    drawn = pixels(page, "#upload-in")
    assert min(drawn[0::4]) == 0 and max(drawn[0::4]) == 255  # the strokes and the white sheet were sent
