"""The web app: one static page ("This ... Does Not Exist") and an HTTP API over the models given at start.

- Models are loaded once; nothing a request names reaches the disk (a model is picked by its served name).
- Inference runs under `torch.inference_mode`, one request at a time (a lock): memory stays that of one
  batch whatever the number of clients, and the images of a seed are the same on every run of the server.
- A PNG is a pure function of (checkpoint, request): its ETag says so, a repeated request is answered from a
  bounded cache or with 304, and every PNG carries its origin (ganforge.provenance) in text chunks.
- Every bad request is a 4xx whose `detail` names the problem; no request can make the server work without
  bound (n, steps, seeds of a figure, upload bytes and pixels all have limits, given in /api/models).
"""
from __future__ import annotations

import hashlib
import io
import secrets
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..provenance import GENERATED, png_info
from ..registry import GanforgeError
from ..data.sources import to_unit_range
from ..viz import make_grid, to_hwc_uint8, to_pil
from .models import Limits, Served

STATIC = Path(__file__).parent / "static"
MAX_SEED = 2**63 - 1
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
PAGE_CSP = "default-src 'self'; img-src 'self' blob: data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")  # Swagger UI starts with an inline script
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG (its origin in text chunks)"},
       304: {"description": "not modified (If-None-Match matched the ETag)"}}
SEED_HELP = "a seed fixes the image: the same seed gives the same image on every run (omit for a fresh one)"


class PngCache:
    """The newest PNGs by ETag, at most `max_bytes` of them (least recently used go first)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self.lock:
            data = self.items.get(key)
            if data is not None:
                self.items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self.lock:
            if key in self.items:
                return
            self.items[key] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                self.size -= len(self.items.popitem(last=False)[1])


def encode_png(images: torch.Tensor, meta: dict, nrow: int | None = None, padding: int = 2) -> bytes:
    """Images [N, C, H, W] in [-1, 1] -> PNG bytes: the image itself for N = 1, else a grid `nrow` wide."""
    arr = to_hwc_uint8(images)[0] if len(images) == 1 else make_grid(images, nrow, padding=padding)
    buf = io.BytesIO()
    to_pil(arr).save(buf, format="PNG", pnginfo=png_info(meta))
    return buf.getvalue()


def read_upload(data: bytes, channels: int, resolution: int, limits: Limits) -> torch.Tensor:
    """An uploaded image's bytes -> [1, C, R, R] in [-1, 1]: its pixel count is checked from the header before it
    is decoded (decompression bombs never expand), transparency goes onto white, the centre square is kept."""
    from PIL import Image, UnidentifiedImageError

    try:  # the common formats only: none that hands the file to another program (EPS to Ghostscript)
        im = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
    except Image.DecompressionBombError as e:
        raise HTTPException(413, f"the image is too large: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise HTTPException(400, f"the upload is not an image in a format taken here ({', '.join(UPLOAD_FORMATS)})"
                            ) from None
    w, h = im.size
    if w < 1 or h < 1 or w * h > limits.max_upload_pixels:
        raise HTTPException(413, f"the image is {w}x{h} pixels; at most {limits.max_upload_pixels} pixels are taken")
    try:
        im.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale, no larger than needed
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im.alpha_composite(rgba)
        im = im.convert("RGB" if channels == 3 else "L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise HTTPException(400, f"the image could not be decoded: {e}") from None
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(im).reshape(resolution, resolution, channels).copy())
    return to_unit_range(x.permute(2, 0, 1)[None])


def create_app(models: dict[str, Served], limits: Limits = Limits()) -> FastAPI:
    """The app over loaded models (serve.load_models); the first one is the page's default."""
    if not models:
        raise GanforgeError("serve needs at least one model")
    app = FastAPI(title="ganforge", version=__version__, docs_url=None, redoc_url=None,
                  description="Generated images from the models this server was started with. " + GENERATED)
    app.state.models, app.state.limits = models, limits
    cache, infer_lock = PngCache(limits.cache_bytes), threading.Lock()
    decoding = threading.BoundedSemaphore(2)  # uploads decoded at once: a few large images, never dozens
    default = next(iter(models))

    # the served names, listed in the schema (the docs' drop-down; schemathesis asks for them too); any other
    # name is still taken in and answered 404 with the list
    MODEL = Query(None, description="a served model's name (default: the first)",
                  json_schema_extra={"enum": list(models)})

    def pick(name: str | None) -> Served:
        if name is None or name == "":
            return models[default]
        if name not in models:
            raise HTTPException(404, f"unknown model {name!r}; served: {', '.join(models)}")
        return models[name]

    def infer(fn):
        with infer_lock, torch.inference_mode():
            return fn()

    def png_response(request: Request, served: Served, key: tuple, make, fixed: bool) -> Response:
        """The PNG for `key`: 304 where the client holds it, else from the cache, else made (under the lock).
        `fixed`: the request fixed every random choice (a seed), so the PNG is cacheable."""
        etag = '"' + hashlib.sha256(repr((__version__, served.checkpoint, key)).encode()).hexdigest()[:32] + '"'
        # no-cache: stored, but asked again each time (a 304 where it holds); the same URL on a server restarted
        # with a newer checkpoint is another image, which the ETag (holding the checkpoint's hash) tells
        headers = {"ETag": etag, "Cache-Control": "public, no-cache" if fixed else "no-store"}
        if fixed and etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        body = cache.get(etag) if fixed else None
        if body is None:
            body = infer(make)
            if fixed:
                cache.put(etag, body)
        return Response(body, media_type="image/png", headers=headers)

    @app.exception_handler(GanforgeError)
    async def _bad_request(request: Request, exc: GanforgeError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", DOCS_CSP if request.url.path == "/docs" else PAGE_CSP)
        return response

    # async: answered on the event loop, never queued behind image requests waiting for the inference lock
    @app.get("/health", tags=["server"])
    async def health() -> dict:
        """Liveness: the server is up with its models loaded."""
        return {"status": "ok", "models": len(models), "version": __version__}

    @app.get("/api/models", tags=["models"])
    async def list_models() -> dict:
        """Every served model's card: architecture, paper, data, step, metrics, and the controls it allows
        (truncation and mixing with a mapping network, classes where conditional, uploads where it translates)."""
        return {"default": default, "notice": GENERATED, "version": __version__,
                "models": [m.card for m in models.values()]}

    @app.get("/api/generate", tags=["images"], response_class=Response, responses=PNG)
    def generate(request: Request,
                 model: str | None = MODEL,
                 seed: int | None = Query(None, ge=0, le=MAX_SEED, description=SEED_HELP),
                 truncation: float | None = Query(None, description="psi (mapping models) or |z| threshold"),
                 class_: str | None = Query(None, alias="class", description="a class name or index"),
                 n: int = Query(1, ge=1, le=limits.max_n, description="images: a grid of seeds seed..seed+n-1")):
        """Generated image(s) as a PNG: image i of the grid is the image of seed + i alone."""
        served = pick(model)
        served.latent("images")
        psi, label = served.truncation(truncation, limits), served.label(class_)
        fixed = seed is not None
        seed = seed if fixed else secrets.randbelow(2**31)
        if seed + n - 1 > MAX_SEED:
            raise GanforgeError(f"seeds seed..seed+n-1 must stay below 2**63 (seed {seed}, n {n})")
        seeds = list(range(seed, seed + n))

        def make() -> bytes:
            g = served.gen
            images = g.generate(g.inputs_for_seeds(seeds, psi, None if label is None else [label]))
            meta = g.provenance(seed=seed, n=n if n > 1 else None, truncation=psi,
                                **{"class": None if label is None else g.classes[label]})
            return encode_png(images, meta)

        response = png_response(request, served, ("generate", seed, psi, label, n), make, fixed)
        response.headers["X-Seed"] = str(seed)
        return response

    @app.get("/api/interpolate", tags=["images"], response_class=Response, responses=PNG)
    def interpolate(request: Request, model: str | None = MODEL,
                    a: int = Query(..., ge=0, le=MAX_SEED, description="the first seed"),
                    b: int = Query(..., ge=0, le=MAX_SEED, description="the last seed"),
                    steps: int = Query(16, ge=2, le=limits.max_steps, description="frames, a's and b's included"),
                    truncation: float | None = Query(None), class_: str | None = Query(None, alias="class")):
        """A walk from seed a's image to seed b's as one strip of `steps` frames side by side (slerp in z,
        lerp in w for a mapping model); the page plays it as an animation."""
        from ..sampling import interpolate as walk

        served = pick(model)
        served.latent("interpolations")
        psi, label = served.truncation(truncation, limits), served.label(class_)

        def make() -> bytes:
            g = served.gen
            frames = walk(g, [a, b], steps, truncation=psi, labels=label)
            strip = torch.cat(list(frames), dim=-1)[None]  # [1, C, R, R * frames]
            meta = g.provenance(seed=[a, b], steps=steps, truncation=psi,
                                **{"class": None if label is None else g.classes[label]})
            return encode_png(strip, meta)

        response = png_response(request, served, ("interpolate", a, b, steps, psi, label), make, True)
        response.headers["X-Frames"] = str(steps)
        return response

    @app.get("/api/mix", tags=["images"], response_class=Response, responses=PNG)
    def mix(request: Request, model: str | None = MODEL,
            rows: str = Query(..., description="row seeds, comma-separated"),
            cols: str = Query(..., description="column seeds, comma-separated"),
            truncation: float | None = Query(None)):
        """StyleGAN's style-mixing figure (models with a mapping network): top row the column seeds, left column
        the row seeds, then a band per style group (coarse, middle, fine) taking those styles from each column."""
        from ..style_tools import style_mix

        served = pick(model)
        if not served.gen.has_mapping:
            raise GanforgeError(f"model {served.name!r} ({served.gen.cfg.model}) has no mapping network: no style mixing")
        psi = served.truncation(truncation, limits)
        row_seeds, col_seeds = _seed_list(rows, "rows", limits.max_mix), _seed_list(cols, "cols", limits.max_mix)

        def make() -> bytes:
            fig = style_mix(served.gen, row_seeds, col_seeds, psi)
            meta = served.gen.provenance(seed={"rows": row_seeds, "cols": col_seeds}, truncation=psi)
            return encode_png(fig.images(), meta, nrow=fig.tiles.shape[1])

        return png_response(request, served, ("mix", tuple(row_seeds), tuple(col_seeds), psi), make, True)

    @app.post("/api/translate", tags=["images"], response_class=Response, responses=PNG,
              openapi_extra={"requestBody": {"required": True, "description": "the image's bytes", "content": {
                  t: {"schema": {"type": "string", "format": "binary"}}
                  for t in ("image/png", "image/jpeg", "application/octet-stream")}}})
    async def translate(request: Request, model: str | None = MODEL,
                        seed: int = Query(0, ge=0, le=MAX_SEED, description="fixes the test-time dropout")):
        """Image in, image out (models that translate, such as pix2pix): the upload's centre square at the
        model's resolution, translated. At most limits.max_upload_bytes bytes and max_upload_pixels pixels."""
        served = pick(model)
        if not served.gen.translates:
            raise GanforgeError(f"model {served.name!r} ({served.gen.cfg.model}) does not translate images; "
                                f"use /api/generate")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise HTTPException(413, f"the upload is {declared} bytes; at most {limits.max_upload_bytes} are taken")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.max_upload_bytes:
                raise HTTPException(413, f"the upload is over {limits.max_upload_bytes} bytes")
        if not data:
            raise HTTPException(400, "the request has no body: POST the image's bytes")
        g = served.gen

        def decode() -> torch.Tensor:
            with decoding:
                return read_upload(bytes(data), g.channels, g.resolution, limits)

        x = await run_in_threadpool(decode)
        digest = hashlib.sha256(data).hexdigest()

        def make() -> bytes:
            meta = g.provenance(seed=seed, source=f"upload sha256:{digest}")
            return encode_png(g.translate(x, seed=seed), meta)

        return await run_in_threadpool(png_response, request, served, ("translate", digest, seed), make, True)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs_assets = _docs_assets()
    if docs_assets is not None:  # Swagger UI from the package, not a CDN: /docs works offline
        app.mount("/docs-static", StaticFiles(directory=docs_assets), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        if docs_assets is None:
            raise HTTPException(404, "the API docs need the fastapi-offline package (pip install fastapi-offline); "
                                     "the schema is at /openapi.json")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ganforge API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app



def _docs_assets() -> Path | None:
    """Swagger UI's script and style as the fastapi-offline package ships them (None where it is missing)."""
    try:
        from importlib.resources import files

        folder = Path(str(files("fastapi_offline") / "static"))
    except (ImportError, TypeError):
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _seed_list(text: str, what: str, most: int) -> list[int]:
    parts = [p for p in text.split(",") if p.strip()]
    if not 1 <= len(parts) <= most:
        raise GanforgeError(f"{what} must hold 1 to {most} seeds, got {len(parts)}")
    try:
        seeds = [int(p) for p in parts]  # (int() refuses "²" and strings of over 4300 digits: ValueError)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise GanforgeError(f"{what} must be comma-separated seeds (integers), got {shown!r}") from None
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise GanforgeError(f"{what}: seeds must be in [0, 2**63), got {str(bad[0])[:40]}")
    return seeds


def serve(args: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = Limits()) -> None:
    """`ganforge serve`: load the models, print where the page is, run uvicorn until Ctrl-C."""
    import uvicorn

    from .models import load_models

    import socket

    try:  # a clear line where the port is taken, before the models load (uvicorn would log a traceback-ish error)
        with socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            pass
    except OSError as e:
        raise GanforgeError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port)") from None
    models = load_models(args, device=device, limits=limits)
    app = create_app(models, limits)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"ganforge serve: listening on {host}: anyone who can reach this machine can use the page and the API",
              file=sys.stderr)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    print(f"ganforge serve: {len(models)} model(s) ({', '.join(models)}) at http://{shown}:{port}/  "
          f"(API docs at /docs; Ctrl-C stops)", flush=True)
    # connections beyond limit_concurrency get 503 at once (each may hold an upload of up to 8 MiB in memory)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5, limit_concurrency=256)
