"""Run folders and checkpoints. A run folder holds `config.json`, `checkpoints/`, `samples/` and
`metrics.jsonl`; a checkpoint is a safetensors weights file whose metadata describes the model
fully (so `convert` needs no flags) plus a training-state file that loads with
`torch.load(weights_only=True)`. Every write goes to a temporary file and is renamed into place,
and the `latest` pointer moves last, so a crash never leaves a broken latest checkpoint."""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, Img2ImgError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LATEST = "latest"
BEST = "best"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
META_KEY = "img2img"
STEP_NAME = re.compile(r"^step_(\d+)$")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


class MetricsLog:
    """Appends records to `metrics.jsonl` and, when asked, to TensorBoard in `RUN/tensorboard`."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.run_dir, self.writer = run_dir, None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise Img2ImgError("--logger tensorboard needs the tensorboard package: "
                                   "pip install tensorboard") from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: Mapping[str, Any]) -> None:
        append_metrics(self.run_dir, record)
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch", "time") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# -- checkpoints ------------------------------------------------------------------------------
def checkpoint_stem(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(run_dir: Path, step: int, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any], state: Mapping[str, Any], keep: int = 0) -> Path:
    """Write weights, then training state, then move `latest`; prune to the newest `keep`."""
    folder = run_dir / CHECKPOINTS
    stem = checkpoint_stem(step)
    weights = folder / f"{stem}{WEIGHTS_SUFFIX}"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(weights) as tmp:
        save_file(cpu, str(tmp), metadata={META_KEY: json.dumps(metadata, default=str)})
    try:
        with atomic_path(folder / f"{stem}{STATE_SUFFIX}") as tmp:
            torch.save(dict(state), tmp)
    except BaseException:
        weights.unlink(missing_ok=True)  # half a checkpoint is no checkpoint
        raise
    write_text(folder / LATEST, stem + "\n")
    if keep > 0:
        prune_checkpoints(folder, keep)
    return weights


def save_best(weights: Path) -> Path:
    """Keep a copy of `weights` as the run's best checkpoint (weights only)."""
    best = weights.with_name(f"{BEST}{WEIGHTS_SUFFIX}")
    with atomic_path(best) as tmp:
        tmp.write_bytes(weights.read_bytes())
    return best


def list_checkpoints(folder: Path) -> list[str]:
    """Checkpoint stems in step order."""
    stems = {p.name[: -len(WEIGHTS_SUFFIX)] for p in folder.glob(f"step_*{WEIGHTS_SUFFIX}")}
    return sorted(s for s in stems if STEP_NAME.match(s))


def prune_checkpoints(folder: Path, keep: int) -> None:
    latest = _read_latest(folder)
    for stem in list_checkpoints(folder)[:-keep]:
        if stem != latest:
            for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX):
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)


def _read_latest(folder: Path) -> str | None:
    try:
        return (folder / LATEST).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def newest_run(runs_dir: Path, model: str | None = None) -> Path:
    """The most recently written run folder under `runs_dir` (optionally of one model)."""
    candidates = []
    for config in runs_dir.glob(f"*/{CONFIG}"):
        run = config.parent
        if _read_latest(run / CHECKPOINTS) is None:
            continue
        if model is not None and read_config(run).get("model") != model:
            continue
        candidates.append((config.stat().st_mtime, run))
    if not candidates:
        which = f"'{model}' " if model else ""
        raise CheckpointError(f"no trained {which}run with a checkpoint under {runs_dir}/; "
                              "train one with `img2img train <model>` or pass --model PATH")
    return max(candidates)[1]


def resolve_checkpoint(ref: str | Path, runs_dir: Path = Path("runs"),
                       model: str | None = None) -> Path:
    """Weights file for `ref`: "latest" (newest run), a run folder, or a checkpoint file; a
    run folder may end in ":best" for its best-evaluated checkpoint."""
    if str(ref) == LATEST:
        ref = newest_run(runs_dir, model)
    if str(ref).endswith(":" + BEST):
        run = Path(str(ref)[: -len(BEST) - 1])
        best = (run / CHECKPOINTS if (run / CHECKPOINTS).is_dir() else run) / \
            f"{BEST}{WEIGHTS_SUFFIX}"
        if not best.is_file():
            raise CheckpointError(f"{run} has no best checkpoint: train with --eval-every N "
                                  "--eval-data DIR to keep one")
        return best
    path = Path(ref)
    if path.is_dir():
        folder = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
        stem = _read_latest(folder)
        if stem is None:
            raise CheckpointError(f"{path} has no checkpoint yet (no {CHECKPOINTS}/{LATEST})")
        path = folder / f"{stem}{WEIGHTS_SUFFIX}"
    elif path.suffix != WEIGHTS_SUFFIX and path.with_name(path.name + WEIGHTS_SUFFIX).exists():
        path = path.with_name(path.name + WEIGHTS_SUFFIX)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: expected a run folder, a "
                              f"{WEIGHTS_SUFFIX} file, or 'latest'")
    return path


def state_path(weights: Path) -> Path:
    return weights.with_name(weights.name[: -len(WEIGHTS_SUFFIX)] + STATE_SUFFIX)


def run_dir_of(weights: Path) -> Path:
    folder = weights.parent
    return folder.parent if folder.name == CHECKPOINTS else folder


def read_metadata(weights: Path) -> dict[str, Any]:
    """The self-description stored in a weights file."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {weights}: {exc}") from None
    if raw is None:
        raise CheckpointError(f"{weights} is not an img2img checkpoint (no '{META_KEY}' metadata)")
    return json.loads(raw)


def load_weights(weights: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {weights}: {exc}") from None


def load_state(weights: Path) -> dict[str, Any]:
    path = state_path(weights)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: this checkpoint holds weights only and "
                              "cannot resume training") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read training state {path}: {exc}") from None
