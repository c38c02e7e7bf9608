"""Load on `img2img serve`: N clients on loopback post images to /api/translate for a bounded
time, each waiting for its answer before sending the next (keep-alive connections), against the
real command (uvicorn, one process). Reports requests/s, p50/p99 latency, the server's peak
memory (VmHWM) and every request that did not get a 200.

The model is a 2-step pix2pix run (U-Net-32, width 8) trained at the start: what is measured is
the serving stack (upload, decode, queue, translate, encode), not a large network.

    python benchmarks/serve_load.py --clients 8 --seconds 20     # about half a minute
    python benchmarks/serve_load.py --smoke                      # 2 clients, 2 s
"""
from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import benchlib


def _train(root: Path) -> Path:
    from img2img_pix2pix import Pix2Pix

    from img2img.testing import check_model

    run = check_model(Pix2Pix, workdir=root / "work")
    return Path(shutil.move(run, root / "runs" / "pix2pix"))


def _body(image: bytes, boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"load.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + image + \
        f"\r\n--{boundary}--\r\n".encode()


def _start(run: Path, args, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix",
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = [sys.executable, "-m", "img2img", "serve", "--model", str(run), "--port", "0",
               "--workers", str(args.workers), "--queue", str(args.queue), "--threads",
               str(args.threads), "--device", args.device, "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                               env=env)
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=5) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server never became ready:\n{log.read_text()[-3000:]}")


def _client(url: str, body: bytes, boundary: str, stop_at: float, latencies: list[float],
            failures: list[str]) -> None:
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/translate", body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
            continue
        if answer.status == 200 and payload:
            latencies.append(time.perf_counter() - started)
        else:
            failures.append(f"{answer.status}: {payload[:200]!r}")
    connection.close()


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    p = benchlib.parser("serve_load", __doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the clients post")
    p.add_argument("--size", type=int, default=256, help="side of the posted JPEG, px")
    p.add_argument("--workers", type=int, default=1, help="the server's --workers")
    p.add_argument("--queue", type=int, default=None,
                   help="the server's --queue (default: enough for every client)")
    args = p.parse_args()
    if args.smoke:
        args.clients, args.seconds, args.size = 2, 2.0, 64
    args.queue = max(0, args.clients - args.workers) if args.queue is None else args.queue
    benchlib.setup_torch(1)
    started, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = _train(root)
        image = benchlib.write_jpegs(root / "images", 1, args.size, args.size)[0].read_bytes()
        boundary = "img2img-load-boundary"
        body = _body(image, boundary)
        process, url = _start(run, args, root / "server.log")
        try:
            latencies: list[float] = []
            failures: list[str] = []
            stop_at = time.monotonic() + args.seconds
            clients = [threading.Thread(target=_client, args=(url, body, boundary, stop_at,
                                                              latencies, failures))
                       for _ in range(args.clients)]
            begun = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            elapsed = time.perf_counter() - begun
            peak = _peak_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    rows = [{"clients": args.clients, "workers": args.workers, "queue": args.queue,
             "image px": args.size, "seconds": round(elapsed, 1), "requests": len(latencies),
             "requests/s": round(len(latencies) / elapsed, 2),
             "p50 ms": round(_percentile(latencies, 0.5) * 1000, 1),
             "p99 ms": round(_percentile(latencies, 0.99) * 1000, 1),
             "server peak RSS MB": peak, "failed": len(failures)}]
    benchlib.print_table(rows, list(rows[0]), f"serve_load: {args.clients} clients for "
                         f"{args.seconds:g} s, {args.size} px JPEG, pix2pix U-Net-32 width 8")
    checks = [{"target": "failed requests", "limit": "0", "measured": len(failures),
               "met": not failures},
              {"target": "requests served", "limit": ">= 1", "measured": len(latencies),
               "met": bool(latencies)}]
    benchlib.finish(args, "serve_load", started, quiet, checks, rows=rows,
                    failures=failures[:20])
    if failures or not latencies:
        raise SystemExit(f"{len(failures)} request(s) failed: {failures[:3]}")


if __name__ == "__main__":
    main()
