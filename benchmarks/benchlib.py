"""Shared pieces of the benchmark scripts: command-line options every script takes, waiting for a
quiet machine, timing, peak memory, running a measurement in a fresh subprocess (so each variant's
peak RSS is its own), generated JPEG folders, and printing a table and writing JSON. Not part of
the installed package; the scripts import it from their own folder."""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# -- options ------------------------------------------------------------------------------------
def parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes and one repetition: checks the script runs, in seconds")
    p.add_argument("--out", type=Path, default=RESULTS / f"{name}.json",
                   help="where to write the figures as JSON")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = torch's default, one per core)")
    p.add_argument("--passive-wait", action="store_true",
                   help="measuring processes run with OMP_WAIT_POLICY=PASSIVE: on a machine "
                        "other jobs keep busy, spinning OpenMP threads wait for each other "
                        "and a 2-thread convolution can run 2-3x slower than with 1 thread")
    p.add_argument("--wait-load", type=float, default=0.0,
                   help="before measuring, wait (up to 20 minutes) until the 1-minute load "
                        "average is below this (0 = do not wait)")
    return p


def wait_for_quiet(limit: float, poll: float = 30.0, timeout: float = 1200.0) -> dict:
    """Wait until the 1-minute load average is below `limit`; returns what happened."""
    started = time.monotonic()
    load = os.getloadavg()[0]
    while limit > 0 and load >= limit and time.monotonic() - started < timeout:
        print(f"load average {load:.2f} >= {limit}: waiting", file=sys.stderr, flush=True)
        time.sleep(poll)
        load = os.getloadavg()[0]
    return {"load_limit": limit, "load_at_start": round(load, 2),
            "waited_s": round(time.monotonic() - started, 1),
            "quiet": limit <= 0 or load < limit}


def setup_torch(threads: int, passive_wait: bool = False) -> None:
    if passive_wait:  # OpenMP reads it once, when torch is first imported
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def resolve_device(name: str) -> Any:
    from img2img.training.devices import resolve_device as resolve

    return resolve(name)


# -- machine and memory ---------------------------------------------------------------------
# The instruction-set extensions that change CPU figures: AVX-512 widens fp32 kernels, VNNI speeds
# int8, BF16 and AMX decide whether bf16 pays; an AVX2-only CPU has none of them.
SPEED_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                    "amx_int8", "amx_tile")


def cpu_extensions(cpuinfo: str | None = None) -> list[str]:
    """Which of SPEED_EXTENSIONS this CPU has (from /proc/cpuinfo's flags; [] elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    return [name for name in SPEED_EXTENSIONS if name in flags]


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "cpu_extensions": cpu_extensions(),
        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def machine_line(info: dict) -> str:
    """The one line every script ends with: which CPU (and GPU) its figures came from."""
    extensions = " ".join(info.get("cpu_extensions") or []) or "none of " + \
        " ".join(SPEED_EXTENSIONS)
    line = (f"Measured on: {info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch "
            f"threads); extensions: {extensions}; torch CPU kernels: "
            f"{info.get('torch_cpu_kernels')}")
    return line + (f"; GPU: {info['gpu']}" if info.get("gpu") else "")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def rss_mb() -> float:
    """Current resident set size (Linux; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def gpu_peak_mb(device: Any) -> float | None:
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any = "cpu") -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, reference: float) -> float:
    return round(ours / reference, 3) if reference else float("nan")


# -- fresh processes --------------------------------------------------------------------------
PRELOAD = ["torch", "torch._dynamo", "torchvision.transforms", "numpy", "cv2", "PIL.Image",
           "kornia", "albumentations", "img2img.training.trainer", "img2img.inference.translator",
           "img2img.inference.convert",
           "img2img.cli", "img2img_pix2pix", "img2img_cyclegan", "img2img_cut"]


def _isolated_entry(fn: Callable[[dict], dict], job: dict, threads: int, method: str,
                    pipe: Any) -> None:
    import multiprocessing

    try:
        # Loader workers start the way they would in a plain interpreter, not via a new server.
        multiprocessing.set_start_method(method, force=True)
        setup_torch(threads)
        pipe.send((True, fn(job)))
    except BaseException:  # noqa: BLE001 -- reported to the parent; a child must never hang it
        import traceback

        pipe.send((False, traceback.format_exc()))
    finally:
        pipe.close()


def isolated(fn: Callable[[dict], dict], job: dict, threads: int = 0,
             passive_wait: bool = False) -> dict:
    """`fn(job)` in a fresh process, so its peak RSS (ru_maxrss) is its own.

    The process forks from a server that has imported torch and img2img but run nothing (so no
    thread pools exist yet); a process therefore starts in milliseconds instead of the seconds an
    interpreter needs to import torch (and torch._dynamo, which the first optimiser imports), and
    every variant starts from the same imported state.
    """
    import multiprocessing

    # albumentations would otherwise ask PyPI for a newer version when the server imports it.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if passive_wait:  # read when OpenMP starts, i.e. when the server imports torch
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    receive, send = context.Pipe(duplex=False)
    default_method = multiprocessing.get_start_method()
    process = context.Process(target=_isolated_entry,
                              args=(fn, job, threads, default_method, send))
    process.start()
    send.close()
    try:
        ok, payload = receive.recv()
    except EOFError:
        ok, payload = False, "the measuring process died without a result"
    process.join()
    if not ok:
        raise RuntimeError(f"measurement {job} failed (exit code {process.exitcode}):\n{payload}")
    return payload


# -- data -------------------------------------------------------------------------------------
def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An HxWx3 uint8 image with photo-like statistics (smooth shapes plus grain), so JPEG files
    have realistic sizes and decode times; random noise would compress far worse than photos."""
    import cv2

    small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    image += rng.integers(-12, 13, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int, height: int, width: int, seed: int = 0,
                quality: int = 90) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), photo_like(rng, height, width),
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        paths.append(path)
    return paths


# -- output -----------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return "-" if value is None else str(value)


def print_table(rows: Sequence[dict], columns: Sequence[str], title: str = "") -> str:
    """Print `rows` as a Markdown table of `columns` (also returned, for the README)."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    text = (f"\n{title}\n" if title else "\n") + "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path}", flush=True)
    return path


def finish(args: argparse.Namespace, name: str, started: dict, quiet: dict,
           checks: Sequence[dict] = (), **payload: Any) -> Path:
    """Every script's ending: the targets table (if any), then the JSON with the machine as it
    was at the start, the load average at the end, the settings and `payload`."""
    if checks:
        print_table(checks, ["target", "limit", "measured", "met"], "Targets")
    print(machine_line(started))
    return write_json(args.out, {
        "benchmark": name, "machine": started, "quiet": quiet,
        "load_average_after": machine()["load_average"],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                     if k != "out"},
        **payload, **({"targets": list(checks)} if checks else {})})
