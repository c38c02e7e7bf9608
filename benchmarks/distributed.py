"""Distributed training speed: steps/s and images/s of `torchrun --nproc-per-node N -m img2img
train cyclegan` for N = 1, 2, 4, 8 processes (one GPU each, NCCL) where that many CUDA GPUs exist,
and the scaling efficiency per process count (images/s of N / (N x images/s of 1)); target
>= 0.85 at 8 GPUs for CycleGAN at 256 px. Each process keeps its own batch, so N processes train
N times the images per step.

Without CUDA GPUs it runs the same launcher on the CPU with gloo (1 and 2 processes): figures
that show the path works and what the collectives cost, not GPU scaling (the processes share
the same cores).

    python benchmarks/distributed.py                 # every GPU count available (or the CPU)
    python benchmarks/distributed.py --smoke         # 32 px, narrow networks, 1 and 2 CPU processes
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

TARGET = 0.85  # scaling efficiency at 8 GPUs, CycleGAN 256 px


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(root: Path, count: int, size: int) -> tuple[Path, Path]:
    benchlib.write_jpegs(root / "a", count, size, size, seed=1)
    benchlib.write_jpegs(root / "b", count, size, size, seed=2)
    return root / "a", root / "b"


def _run(processes: int, job: dict, root: Path) -> dict:
    """One torchrun job; the time per step comes from the run's own metrics log (wall time
    since the first step), so start-up and the final checkpoint are not counted."""
    name = f"n{processes}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "img2img",
               "train", job["model"], "--a", str(job["a"]), "--b", str(job["b"]),
               "--load-size", str(job["size"]), "--crop-size", str(job["size"]),
               "--batch-size", str(job["batch"]), "--max-steps", str(job["steps"]),
               "--log-every", "1", "--sample-every", "0", "--checkpoint-every", "0",
               "--workers", str(job["workers"]), "--device", job["device"],
               "--runs-dir", str(root / "runs"), "--name", name, *job["extra"]]
    env = {**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img",
           "OMP_NUM_THREADS": str(job["threads"])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"torchrun with {processes} processes failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in
               (root / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    warm = [r for r in records if r["step"] > job["warmup"]]
    seconds = (warm[-1]["time"] - records[job["warmup"] - 1]["time"]) / len(warm)
    images = processes * job["batch"] / seconds
    return {"processes": processes, "s/step": seconds, "steps/s": 1 / seconds,
            "images/s": images}


def main() -> None:
    p = benchlib.parser("distributed", __doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="steps per run (the first few warm up)")
    args = p.parse_args()
    started, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    import torch

    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    counts = [n for n in (1, 2, 4, 8) if n <= gpus] if gpus else [1, 2]
    size = 32 if args.smoke else 256
    extra = ["--ngf", "8", "--ndf", "8", "--generator", "resnet-6"] if args.smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = _data(root / "data", 16 if args.smoke else 64, size)
        job = {"model": "cyclegan", "a": a, "b": b, "size": size, "batch": 1,
               "steps": 4 if args.smoke else args.steps, "warmup": 1 if args.smoke else 5,
               "workers": 0 if args.smoke else 2, "device": "cuda" if gpus else "cpu",
               "threads": max(1, args.threads), "extra": extra}
        rows = []
        for n in counts:
            t0 = time.perf_counter()
            rows.append(_run(n, job, root))
            print(f"{n} process(es): {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    base = rows[0]["images/s"]
    for row in rows:
        row["efficiency"] = row["images/s"] / (row["processes"] * base)
    benchlib.print_table(rows, ["processes", "s/step", "steps/s", "images/s", "efficiency"],
                         f"cyclegan, {size} px, batch 1 per process, "
                         f"{'GPUs (NCCL)' if gpus else 'CPU (gloo): correctness only'}")
    checks = []
    if gpus >= 8 and not args.smoke:
        eff = rows[-1]["efficiency"]
        checks.append({"target": "cyclegan 256 px scaling efficiency at 8 GPUs",
                       "limit": f">= {TARGET}", "measured": round(eff, 3),
                       "met": eff >= TARGET})
    note = None if gpus else ("no CUDA GPU here: CPU processes share the same cores, so these "
                              "figures show the distributed path runs, not how it scales")
    if note:
        print(f"\nnote: {note}")
    benchlib.finish(args, "distributed", started, quiet, checks, rows=rows, gpus=gpus,
                    note=note)


if __name__ == "__main__":
    main()
