"""Run folders: the layout (`config.json`, `checkpoints/`, `samples/` with the grids' column
names, the training log `metrics.jsonl`, the evaluation record `eval.json`), the training log,
and finding the newest run (of a model that translates, samples, or any). Every file is written
atomically (`img2img.data.atomic`); checkpoints themselves are `img2img.runs.checkpoints`."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.atomic import write_text
from ..errors import CheckpointError

CONFIG = "config.json"
METRICS = "metrics.jsonl"  # the training log: one JSON line per --log-every
EVAL = "eval.json"  # what `img2img eval` measured
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LATEST = "latest"
SAMPLE_COLUMNS = "samples.json"  # the column names of the sample grids, for the report
# What a command needs its model to do; "latest" means the newest run of such a model.
PURPOSES = {"translate": "translates images", "sample": "samples (generates from noise)",
            "any": "any model"}


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


def newest_run_for(purpose: str, runs_dir: Path, models: Mapping[str, Any]) -> Path:
    """The newest run under `runs_dir` of one of `models` (name -> model class) with `purpose`
    ("any": of any of them), so a newer cgan run does not hide the pix2pix run `latest` means
    for `convert`, nor the other way round."""
    names = [name for name, cls in models.items()
             if purpose == "any" or bool(cls.directions) == (purpose == "translate")]
    found = []
    for name in names:
        try:
            run = newest_run(runs_dir, name)
        except CheckpointError:
            continue
        found.append(((run / CONFIG).stat().st_mtime, str(run)))
    if not found:
        raise CheckpointError(f"no trained run of a model that {PURPOSES[purpose]} under "
                              f"{runs_dir}/; train one with `img2img train <model>` or pass "
                              "--model RUN|CHECKPOINT")
    return Path(max(found)[1])


def sample_columns(run_dir: Path) -> list[str]:
    """The column names of a run's sample grids (empty when unknown, e.g. an older run)."""
    try:
        found = json.loads((run_dir / SAMPLE_COLUMNS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    columns = found.get("columns") if isinstance(found, dict) else None
    return [str(c) for c in columns] if isinstance(columns, list) else []
