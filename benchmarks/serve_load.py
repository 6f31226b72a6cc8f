"""`ganforge serve` under load: N concurrent clients on loopback for a bounded time, per model and endpoint.

    python benchmarks/serve_load.py                    # 8 clients, 20 s per scenario, twice -> docs/results/serve.json
    python benchmarks/serve_load.py --clients 16 --seconds 30 --runs dcgan=runs/my-dcgan style=runs/my-style

The server is the real one (`ganforge serve` in its own process, uvicorn on 127.0.0.1); the clients are threads
of this process with keep-alive connections. Without --runs it makes its own models: a 1-step run (weights do
not change the cost of an image) of a 32px DCGAN, the 64px StyleGAN2 (the most work per image of the families
at their CPU presets) and the 64px pix2pix (uploads), on folders of random images it writes.

Scenarios: `fresh` asks a new seed every time (every request runs G), `repeat` asks 16 seeds over and over (the
ETag cache answers), `translate` posts a 64px PNG (a new seed each time). Reported: requests/s, p50/p99 latency,
errors (any status but 200), and the server's resident memory sampled every 0.5 s (start, end, peak). Every
scenario runs twice: the first pass warms up (allocator, the PNG cache filling to its bound, 8 MiB here and
64 MiB by default), the second must leave the resident memory flat.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import merge_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "serve.json"


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_runs(root: Path) -> dict[str, Path]:
    """1-step runs of the three models on folders of random images (this machine's CPU presets)."""
    rng = np.random.default_rng(0)
    pics = root / "pics" / "all"
    pics.mkdir(parents=True)
    for i in range(64):
        (pics / f"{i:03d}.png").write_bytes(_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    pairs = root / "pairs"
    for side in ("A", "B"):
        (pairs / side).mkdir(parents=True)
        for i in range(16):
            (pairs / side / f"{i:03d}.png").write_bytes(_png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    plan = {"dcgan-32": ["dcgan", "--data", str(root / "pics"), "--resolution", "32"],
            "stylegan2-64": ["stylegan2", "--data", str(root / "pics"), "--resolution", "64"],
            "pix2pix-64": ["pix2pix", "--data", str(pairs), "--resolution", "64"]}
    runs = {}
    for name, args in plan.items():
        out = root / name
        subprocess.run([sys.executable, "-m", "ganforge.cli", "train", *args, "--steps", "1", "--batch-size", "4",
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
        runs[name] = out
    return runs


def _fresh() -> int:
    return random.getrandbits(62)  # a seed never asked before (in any pass): G runs


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def load(port: int, path_of, clients: int, seconds: float, body: bytes | None, pid: int) -> dict:
    """`clients` threads, each on its own keep-alive connection, asking `path_of(i)` (POSTing `body` if given)."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = 0
        while time.monotonic() < stop:
            path = path_of(k * 1_000_000 + i)
            i += 1
            t = time.perf_counter()
            try:
                conn.request("POST" if body else "GET", path, body=body,
                             headers={"Content-Type": "image/png"} if body else {})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                why = f"{r.status}"
            except (OSError, http.client.HTTPException) as e:
                ok, why = False, type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                (latencies.append(time.perf_counter() - t) if ok else errors.append(why))
        conn.close()

    rss = [rss_kib(pid)]
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        time.sleep(0.5)
        rss.append(rss_kib(pid))
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {"requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "req_per_s": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "rss_mib": {"start": round(rss[0] / 1024, 1), "end": round(rss[-1] / 1024, 1),
                        "peak": round(max(rss) / 1024, 1)}}


def _lines(rows: list[dict]) -> None:
    for r in rows:
        m = r["rss_mib"]
        print(f"pass {r['pass']}  {r['model']:14s} {r['scenario']:9s} {r['req_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
              f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  RSS {m['start']:.0f} -> {m['end']:.0f} MiB "
              f"(peak {m['peak']:.0f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--runs", nargs="*", default=None, help="NAME=RUN (default: make 1-step runs)")
    ap.add_argument("--passes", type=int, default=2, help="runs of every scenario (the RSS of the 2nd should be flat)")
    ap.add_argument("--cache-mib", type=float, default=8,
                    help="the server's PNG cache (default 8: it fills in the first pass, so the second shows memory flat)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.runs:
            runs = dict(r.split("=", 1) for r in args.runs)
        else:
            print("making 1-step runs of dcgan (32px), stylegan2 (64px) and pix2pix (64px) ...", flush=True)
            runs = make_runs(Path(tmp))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(Path(tmp) / "serve.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "ganforge.cli", "serve", *(f"{k}={v}" for k, v in runs.items()),
                                   "--port", str(port), "--cache-mib", str(args.cache_mib)],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/api/models")
                    cards = json.loads(conn.getresponse().read())["models"]
                    break
                except (OSError, http.client.HTTPException, json.JSONDecodeError):
                    if server.poll() is not None:
                        raise SystemExit(f"ganforge serve exited: {(Path(tmp) / 'serve.log').read_text()[-2000:]}")
                    time.sleep(0.2)
            rows, plan = [], []
            for card in cards:
                name = card["name"]
                if card["capabilities"]["translates"]:
                    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
                    scenarios = {"translate": (lambda i, n=name: f"/api/translate?model={n}&seed={_fresh()}", _png(img))}
                else:
                    scenarios = {"fresh": (lambda i, n=name: f"/api/generate?model={n}&seed={_fresh()}", None),
                                 "repeat": (lambda i, n=name: f"/api/generate?model={n}&seed={random.randrange(16)}",
                                            None)}
                for scenario, (path_of, body) in scenarios.items():
                    plan.append((name, card, scenario, path_of, body))
            for k in range(1, args.passes + 1):  # a second pass over the same scenarios: memory must not grow
                for name, card, scenario, path_of, body in plan:
                    res = load(port, path_of, args.clients, args.seconds, body, server.pid)
                    rows.append({"pass": k, "model": name, "family": card["model"], "resolution": card["resolution"],
                                 "parameters": card["parameters"], "scenario": scenario, "clients": args.clients,
                                 "seconds": args.seconds, **res})
                    _lines(rows[-1:])
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    import torch

    merge_result(args.json, f"clients{args.clients}", {
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cpus": os.cpu_count(), "rows": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
