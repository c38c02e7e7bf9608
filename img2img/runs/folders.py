"""Run folders: the layout (`config.json`, `checkpoints/`, `samples/`, the training log
`metrics.jsonl`, the evaluation record `eval.json`), atomic writes (a temporary file renamed into
place, so a crash never leaves half a file), the training log, and finding the newest run.
Checkpoints themselves are `img2img.checkpoints`."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

CONFIG = "config.json"
METRICS = "metrics.jsonl"  # the training log: one JSON line per --log-every
EVAL = "eval.json"  # what `img2img eval` measured
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LATEST = "latest"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it what open() would under the umask,
        # so others on a shared server (and a web server showing the report) can read it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it, then set it back
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def create_run(runs_dir: Path, name: str) -> Path:
    """Make a new run folder `runs_dir/name`, adding -2, -3, ... if the name is taken."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    candidate, n = runs_dir / name, 1
    while True:
        try:
            candidate.mkdir()
            break
        except FileExistsError:
            n += 1
            candidate = runs_dir / f"{name}-{n}"
    (candidate / CHECKPOINTS).mkdir()
    (candidate / SAMPLES).mkdir()
    return candidate


def default_run_name(model: str) -> str:
    return f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    write_text(run_dir / CONFIG, json.dumps(config, indent=2, default=str) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a run folder (no {CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def append_metrics(run_dir: Path, record: Mapping[str, Any]) -> None:
    with open(run_dir / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def drop_metrics_after(run_dir: Path, step: int) -> int:
    """Remove the log lines of steps after `step` (redone when a run resumes from a checkpoint
    older than its last log line), so every step appears once; returns how many were dropped."""
    path = run_dir / METRICS
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line and _step_of(line) <= step]
    if len(kept) != len([line for line in lines if line]):
        write_text(path, "".join(line + "\n" for line in kept))
    return len([line for line in lines if line]) - len(kept)


def _step_of(line: str) -> float:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return math.inf  # a line a crash cut short: dropped with the steps after the checkpoint


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_latest(folder: Path) -> str | None:
    """The stem the `latest` pointer in a checkpoints folder names, or None."""
    try:
        return (folder / LATEST).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def newest_run(runs_dir: Path, model: str | None = None) -> Path:
    """The most recently written run folder under `runs_dir` (optionally of one model)."""
    candidates = []
    for config in runs_dir.glob(f"*/{CONFIG}"):
        run = config.parent
        if read_latest(run / CHECKPOINTS) is None:
            continue
        if model is not None and read_config(run).get("model") != model:
            continue
        candidates.append((config.stat().st_mtime, run))
    if not candidates:
        which = f"'{model}' " if model else ""
        raise CheckpointError(f"no trained {which}run with a checkpoint under {runs_dir}/; "
                              "train one with `img2img train <model>` or pass --model PATH")
    return max(candidates)[1]
