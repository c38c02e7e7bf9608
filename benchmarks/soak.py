"""Soak test: a long CPU training run that is killed with SIGKILL at random moments and resumed
each time, with one training image deleted midway. Reports the steps done, the kills survived,
the steps lost per kill (target: at most one checkpoint interval), the bytes of crash leftovers
at the end (target: zero) and the memory (PSS) of the trainer and its loader processes over
time (target: no growth after warm-up within a process's life, which needs kills at least
~40 s apart to tell), plus whether every step is logged once.

    python benchmarks/soak.py                  # 30 minutes at 64 px
    python benchmarks/soak.py --minutes 5
    python benchmarks/soak.py --smoke          # about half a minute, two kills
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

CHECKPOINT_EVERY = 20


def _tree_rss_mb(pid: int) -> float:
    """Memory of `pid` and every process below it (the loader workers), in MB."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            # Proportional set size: shared library pages are counted once, not per process.
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(l for l in rollup.splitlines() if l.startswith("Pss:")).split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def _logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return steps


def _checkpoint_step(run: Path) -> int:
    latest = run / "checkpoints" / "latest"
    return int(latest.read_text().strip().split("_")[1]) if latest.exists() else 0


def _leftover_bytes(run: Path) -> int:
    folder = run / "checkpoints"
    tmp = sum(p.stat().st_size for p in run.rglob(".*.tmp"))
    orphans = sum(p.stat().st_size for p in folder.glob("step_*.state.pt")
                  if not p.with_name(p.name.replace(".state.pt", ".safetensors")).exists())
    return tmp + orphans


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    # stderr to a file, not a pipe: an unread pipe fills up and stalls the trainer.
    with open(log, "a", encoding="utf-8") as stream:
        return subprocess.Popen([sys.executable, "-m", "img2img", "train", "pix2pix", *args],
                                env=env, stdout=subprocess.DEVNULL, stderr=stream)


def _watch(process: subprocess.Popen, seconds: float, life: list, started: float, log: Path,
           until: Callable[[], bool] = lambda: True) -> None:
    """Sample memory once a second into `life` (this process's samples) for `seconds`, then on
    until `until()` holds; stop the benchmark, with the log, if the process ends by itself."""
    end = time.monotonic() + seconds
    while time.monotonic() < end or not until():
        if process.poll() is not None:
            raise SystemExit(f"training ended by itself:\n{log.read_text()[-3000:]}")
        life.append((round(time.monotonic() - started, 1), _tree_rss_mb(process.pid)))
        time.sleep(1.0)


WARMUP_S = 15  # start-up, worker spawn and the first epoch: memory is allowed to rise here


def _growth(lives: list[list]) -> float | None:
    """Worst growth of one process life's memory after warm-up: peak of its second half over
    the peak of its first half, minus 1. None when no life lasted long enough to tell."""
    worst = None
    for life in lives:
        settled = [m for t, m in life if t - life[0][0] >= WARMUP_S]
        if len(settled) >= 20:
            half = len(settled) // 2
            growth = max(settled[half:]) / max(settled[:half]) - 1
            worst = growth if worst is None else max(worst, growth)
    return worst


def main() -> None:
    p = benchlib.parser("soak", __doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="total training time")
    p.add_argument("--kill-every", type=float, default=120.0,
                   help="mean seconds between kills (random, at least 5 s)")
    args = p.parse_args()
    started_info, quiet = benchlib.machine(), benchlib.wait_for_quiet(args.wait_load)
    minutes = 0.5 if args.smoke else args.minutes
    kill_every = 8.0 if args.smoke else args.kill_every
    size = 32 if args.smoke else 64
    rng = random.Random(0)
    env = {**os.environ, "IMG2IMG_LOAD_PLUGINS": "img2img",
           "OMP_NUM_THREADS": str(max(1, args.threads))}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from img2img.testing import write_sample_images

        data = write_sample_images("paired", root / "data", n=16 if args.smoke else 64,
                                   size=size + 8)["data"]
        run = root / "runs" / "soak"
        # Never ends by itself: 10^6 epochs and steps (a 30-minute run at 64 px did 200 epochs).
        common = ["--max-steps", "10000000", "--epochs", "1000000",
                  "--checkpoint-every", str(CHECKPOINT_EVERY),
                  "--log-every", "1", "--sample-every", "0", "--workers", "2",
                  "--runs-dir", str(root / "runs")]
        first = ["--data", str(data), "--name", "soak", "--generator", "unet-32" if args.smoke
                 else "unet-64", "--ngf", "8" if args.smoke else "32", "--ndf", "8" if
                 args.smoke else "32", "--load-size", str(size), "--crop-size", str(size),
                 "--device", "cpu"]
        started, lives, kills, lost, deleted = time.monotonic(), [[]], [], [], None
        log = root / "train.log"
        process = _start([*first, *common], env, log)
        while time.monotonic() - started < minutes * 60:
            wait = max(5.0, rng.expovariate(1 / kill_every))
            wait = min(wait, minutes * 60 - (time.monotonic() - started))
            # A kill before the first checkpoint leaves nothing to resume (on a loaded machine
            # start-up can outlast the wait): keep watching until there is one.
            _watch(process, wait, lives[-1], started, log,
                   until=(run / "checkpoints" / "latest").exists)
            if deleted is None and time.monotonic() - started > minutes * 30:
                deleted = sorted((data / "a").iterdir())[3]
                deleted.unlink()  # a file that vanishes mid-run
            process.send_signal(signal.SIGKILL)
            process.wait()
            logged = max(_logged_steps(run) or [0])
            kept = _checkpoint_step(run)
            kills.append(logged)
            lost.append(logged - kept)
            process = _start(["--resume", str(run), *common], env, log)
            lives.append([])
        # The last one ends cleanly, with a checkpoint: once it trains again (a Ctrl-C during
        # start-up, which a loaded machine makes long, ends it before its handler exists).
        resumed_from = max(_logged_steps(run) or [0])
        _watch(process, 0.0, lives[-1], started, log,
               until=lambda: max(_logged_steps(run) or [0]) > resumed_from)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            raise SystemExit(f"training did not stop on Ctrl-C:\n{log.read_text()[-3000:]}")
        steps = _logged_steps(run)
        leftovers = _leftover_bytes(run)
    growth = _growth(lives)
    peak = max((m for life in lives for _, m in life), default=0.0)
    rows = [{"steps": max(steps or [0]), "kills": len(kills), "max steps lost": max(lost or [0]),
             "leftover bytes": leftovers, "steps logged once": steps == list(range(1, len(steps)
                                                                                   + 1)),
             "peak MB": peak, "memory growth": growth}]
    benchlib.print_table(rows, list(rows[0]), f"soak: {minutes} min at {size} px, a kill every "
                         f"~{kill_every:.0f} s, checkpoint every {CHECKPOINT_EVERY} steps")
    checks = [
        {"target": "steps lost per kill", "limit": f"<= {CHECKPOINT_EVERY}",
         "measured": max(lost or [0]), "met": max(lost or [0]) <= CHECKPOINT_EVERY},
        {"target": "leftover bytes", "limit": "0", "measured": leftovers, "met": leftovers == 0},
        {"target": "every step logged once", "limit": "yes", "measured": rows[0][
            "steps logged once"], "met": rows[0]["steps logged once"]},
        {"target": "memory growth after warm-up, worst process life", "limit": "<= 0.10",
         "measured": None if growth is None else round(growth, 3),
         "met": None if growth is None else growth <= 0.10},
    ]
    benchlib.finish(args, "soak", started_info, quiet, checks, rows=rows, lost_per_kill=lost,
                    memory_mb=lives, deleted=str(deleted))


if __name__ == "__main__":
    main()
