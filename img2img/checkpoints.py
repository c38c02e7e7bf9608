"""Checkpoints: reading and writing them, and what they record. A checkpoint is a safetensors
weights file (generators, discriminators and, with --ema, the averaged generators) whose metadata
describes the run fully, so `convert` needs no flags, plus a training-state file (optimisers,
scaler, step, random numbers, model extra state) that loads with `torch.load(weights_only=True)`.
Weights are written before state and the `latest` pointer moves last, each write atomic, so a
crash never leaves a broken latest checkpoint."""
from __future__ import annotations

import dataclasses
import json
import random
import re
import typing
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import runs
from .errors import CheckpointError
from .model import ImageSpec, Model, option_fields

BEST = "best"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
META_KEY = "img2img"
EMA_PREFIX = "ema."  # the averaged generators' tensors in a weights file
STEP_NAME = re.compile(r"^step_(\d+)$")


def checkpoint_stem(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(run_dir: Path, step: int, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any], state: Mapping[str, Any], keep: int = 0) -> Path:
    """Write weights, then training state, then move `latest`; prune to the newest `keep`."""
    folder = run_dir / runs.CHECKPOINTS
    stem = checkpoint_stem(step)
    weights = folder / f"{stem}{WEIGHTS_SUFFIX}"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with runs.atomic_path(weights) as tmp:
        save_file(cpu, str(tmp), metadata={META_KEY: json.dumps(metadata, default=str)})
    try:
        with runs.atomic_path(folder / f"{stem}{STATE_SUFFIX}") as tmp:
            torch.save(dict(state), tmp)
    except BaseException:
        weights.unlink(missing_ok=True)  # half a checkpoint is no checkpoint
        raise
    runs.write_text(folder / runs.LATEST, stem + "\n")
    if keep > 0:
        prune_checkpoints(folder, keep)
    return weights


def save_best(weights: Path) -> Path:
    """Keep a copy of `weights` as the run's best checkpoint (weights only)."""
    best = weights.with_name(f"{BEST}{WEIGHTS_SUFFIX}")
    with runs.atomic_path(best) as tmp:
        tmp.write_bytes(weights.read_bytes())
    return best


def list_checkpoints(folder: Path) -> list[str]:
    """Checkpoint stems in step order."""
    stems = {p.name[: -len(WEIGHTS_SUFFIX)] for p in folder.glob(f"step_*{WEIGHTS_SUFFIX}")}
    return sorted(s for s in stems if STEP_NAME.match(s))


def prune_checkpoints(folder: Path, keep: int) -> None:
    latest = runs.read_latest(folder)
    for stem in list_checkpoints(folder)[:-keep]:
        if stem != latest:
            for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX):
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)


def resolve_checkpoint(ref: str | Path, runs_dir: Path = Path("runs"),
                       model: str | None = None) -> Path:
    """Weights file for `ref`: "latest" (newest run), a run folder, or a checkpoint file; a
    run folder may end in ":best" for its best-evaluated checkpoint."""
    if str(ref) == runs.LATEST:
        ref = runs.newest_run(runs_dir, model)
    if str(ref).endswith(":" + BEST):
        run = Path(str(ref)[: -len(BEST) - 1])
        best = (run / runs.CHECKPOINTS if (run / runs.CHECKPOINTS).is_dir() else run) / \
            f"{BEST}{WEIGHTS_SUFFIX}"
        if not best.is_file():
            raise CheckpointError(f"{run} has no best checkpoint: train with --eval-every N "
                                  "--eval-data DIR to keep one")
        return best
    path = Path(ref)
    if path.is_dir():
        folder = path / runs.CHECKPOINTS if (path / runs.CHECKPOINTS).is_dir() else path
        stem = runs.read_latest(folder)
        if stem is None:
            raise CheckpointError(f"{path} has no checkpoint yet (no {runs.CHECKPOINTS}/{runs.LATEST})")
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
    return folder.parent if folder.name == runs.CHECKPOINTS else folder


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


# -- what a checkpoint records ------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version_, internal, gauss = state["python"]
    random.setstate((version_, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def img2img_version() -> str:
    try:
        return version("img2img")
    except PackageNotFoundError:
        return "unknown"


def jsonable(obj: Any) -> Any:
    """Dataclass -> plain JSON values (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def settings_record(model: Model, config: Any, plugin: Mapping[str, str],
                    preset: str | None = None) -> dict[str, Any]:
    return {
        "model": model.name,
        "preset": preset,
        "plugin": dict(plugin),
        "img2img_version": img2img_version(),
        "options": jsonable(model.options),
        "spec": jsonable(model.spec),
        "training": jsonable(config),
    }


def _coerce(value: Any, hint: Any) -> Any:
    """Undo JSON's flattening: lists back to tuples, strings back to paths."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is Path or Path in args:
        return Path(value)
    if origin is tuple or hint is tuple or (isinstance(value, list) and origin is not list):
        return tuple(value)
    return value


def from_record(cls: type, values: Mapping[str, Any], what: str) -> Any:
    """Rebuild a frozen settings dataclass from its JSON record, ignoring retired fields."""
    hints = typing.get_type_hints(cls)
    fields = option_fields(cls)
    kwargs = {k: _coerce(v, hints.get(k)) for k, v in values.items() if k in fields}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's {what} do not fit this version: {exc}") from None


def spec_from_record(values: Mapping[str, Any]) -> ImageSpec:
    return from_record(ImageSpec, values, "image settings")


def model_from_checkpoint(model_cls: type[Model], weights: Path,
                          device: str | torch.device = "cpu", use_average: bool = True) -> Model:
    """Rebuild a model from a checkpoint alone (no flags) and load its weights, in eval mode.
    With `use_average`, the generators get the moving-average weights when the run kept them."""
    meta = read_metadata(weights)
    if meta.get("model") != model_cls.name:
        raise CheckpointError(f"{weights} holds a '{meta.get('model')}' model, "
                              f"not '{model_cls.name}'")
    options = from_record(model_cls.Options, meta.get("options", {}), "model options")
    model = model_cls(options, spec=spec_from_record(meta.get("spec", {})))
    tensors = load_weights(weights, device)
    load_networks(model, tensors, weights)
    averaged = average_tensors(tensors)
    if averaged and use_average:
        model.generators.load_state_dict(averaged)
    return model.to(device).eval()


def network_tensors(model: Model) -> dict[str, torch.Tensor]:
    """All network weights under `generators.` / `discriminators.` prefixes."""
    tensors = {f"generators.{k}": v for k, v in model.generators.state_dict().items()}
    tensors.update({f"discriminators.{k}": v
                    for k, v in model.discriminators.state_dict().items()})
    return tensors


def load_networks(model: Model, tensors: Mapping[str, torch.Tensor], source: Path) -> None:
    for prefix, modules in (("generators.", model.generators),
                            ("discriminators.", model.discriminators)):
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            modules.load_state_dict(part)
        except RuntimeError as exc:
            raise CheckpointError(f"{source} does not match the '{model.name}' networks "
                                  f"of this version: {str(exc).splitlines()[0]}") from None


def average_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The averaged generator weights stored in a checkpoint, keyed like `generators.state_dict()`."""
    return {k[len(EMA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
