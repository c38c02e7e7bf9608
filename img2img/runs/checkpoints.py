"""Checkpoints: reading and writing them, and what they record. A checkpoint is a safetensors
weights file (generators, discriminators, auxiliary networks and, with --ema, the averaged
generators) whose metadata describes the run fully, so `convert` needs no flags, plus a
training-state file (optimisers, scaler, step, model extra state) that loads with
`torch.load(weights_only=True)`.
Weights are written before state and the `latest` pointer moves last, each write atomic, so a
crash never leaves a broken latest checkpoint."""
from __future__ import annotations

import dataclasses
import errno
import json
import re
import shutil
import typing
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..data.atomic import atomic_path, write_text
from ..errors import CheckpointError
from ..fields import option_fields, unrecorded
from ..model import ImageSpec, Model
from ..networks.noise import install_noise
from . import folders as runs

BEST = "best"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
META_KEY = "img2img"
EMA_PREFIX = "ema."  # the averaged generators' tensors in a weights file
NOISE_SETTINGS = ("noise_dim", "mode_seeking", "latent_regression")  # install_noise's arguments
STEP_NAME = re.compile(r"^step_(\d+)$")


def checkpoint_stem(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(run_dir: Path, step: int, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any], state: Mapping[str, Any] | None,
                    keep: int = 0) -> Path:
    """Write weights, then training state, then move `latest`; prune to the newest `keep`.
    With `state` None the checkpoint holds weights only (an imported run: nothing to resume)."""
    folder = run_dir / runs.CHECKPOINTS
    stem = checkpoint_stem(step)
    weights = folder / f"{stem}{WEIGHTS_SUFFIX}"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _require_space(folder, _nbytes(cpu) + _nbytes(state), weights)
    try:
        with atomic_path(weights) as tmp:
            save_file(cpu, str(tmp), metadata={META_KEY: json.dumps(metadata, default=str)})
        try:
            if state is not None:
                with atomic_path(folder / f"{stem}{STATE_SUFFIX}") as tmp:
                    torch.save(dict(state), tmp)
        except BaseException:
            weights.unlink(missing_ok=True)  # half a checkpoint is no checkpoint
            raise
    except (OSError, RuntimeError, SafetensorError) as exc:
        if _is_out_of_space(exc, folder):
            raise CheckpointError(_no_space(folder, weights)) from None
        raise
    write_text(folder / runs.LATEST, stem + "\n")
    if keep > 0:
        prune_checkpoints(folder, keep)
    return weights


# Free space a save leaves on top of what it writes: a file system that is nearly full fails
# on the metadata, the latest pointer or the next log line right after.
SPARE_BYTES = 16 * 2**20


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state: what a save is about to write, roughly."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def _no_space(folder: Path, target: Path) -> str:
    previous = runs.read_latest(folder)
    kept = f"the previous checkpoint {previous} is intact" if previous else \
        "there is no earlier checkpoint"
    return f"no space left on device while writing {target}; {kept}"


def _require_space(folder: Path, needed: int, target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + SPARE_BYTES:
        raise CheckpointError(f"{_no_space(folder, target)} ({(needed + SPARE_BYTES) / 2**20:.0f} "
                              f"MB needed, {free / 2**20:.0f} MB free)")


def _is_out_of_space(exc: BaseException, folder: Path) -> bool:
    """ENOSPC however it arrives: an OSError, torch's `file write failed` RuntimeError or a
    safetensors error, which keep the errno only in their text."""
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc):
        return True
    return "write" in str(exc).lower() and shutil.disk_usage(folder).free < SPARE_BYTES


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Remove what a killed save leaves behind: temporary files, and training-state files whose
    weights were pruned. Returns what was removed."""
    removed = []
    folder = run_dir / runs.CHECKPOINTS
    for tmp in [*run_dir.glob(".*.tmp"), *folder.glob(".*.tmp"),
                *(run_dir / runs.SAMPLES).glob(".*.tmp")]:
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    for state in folder.glob(f"step_*{STATE_SUFFIX}"):
        if not state.with_name(state.name[: -len(STATE_SUFFIX)] + WEIGHTS_SUFFIX).exists():
            state.unlink(missing_ok=True)
            removed.append(state)
    return removed


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
    latest = runs.read_latest(folder)
    for stem in list_checkpoints(folder)[:-keep]:
        if stem != latest:
            for suffix in (STATE_SUFFIX, WEIGHTS_SUFFIX):  # killed between: weights only, usable
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
                              "cannot resume training; start a new run from its weights with "
                              "--init-from") from None
    except Exception as exc:  # never pass on torch's advice to set weights_only=False
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc):
            reason = "it holds objects other than tensors and plain values"
        raise CheckpointError(f"{path} is not a valid img2img training-state file and may be "
                              f"unsafe, so it was not loaded ({reason})") from None


# -- what a checkpoint records ------------------------------------------------------------------
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
        "training": {k: v for k, v in jsonable(config).items() if k not in unrecorded(config)},
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
        return (value,) if isinstance(value, str) else tuple(value)  # an older single value
    return value


def from_record(cls: type, values: Mapping[str, Any], what: str) -> Any:
    """Rebuild a frozen settings dataclass from its JSON record, ignoring retired fields and
    reading renamed ones under their new names (a class's `renamed_fields`: old -> new)."""
    renamed = getattr(cls, "renamed_fields", {})
    values = {renamed.get(k, k): v for k, v in values.items()}
    hints = typing.get_type_hints(cls)
    fields = option_fields(cls)
    kwargs = {k: _coerce(v, hints.get(k)) for k, v in values.items() if k in fields}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's {what} do not fit this version: {exc}") from None


def noise_settings(training: Mapping[str, Any]) -> dict[str, Any]:
    """The noise input a run's recorded training settings ask for (none when not recorded)."""
    return {name: training.get(name, 0) for name in NOISE_SETTINGS}


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
    install_noise(model, **noise_settings(meta.get("training", {})))
    tensors = load_weights(weights, device)
    load_networks(model, tensors, weights)
    averaged = average_tensors(tensors)
    if averaged and use_average:
        model.generators.load_state_dict(averaged)
    if meta.get("directions") is not None:
        keep_directions(model, meta["directions"])
    return model.to(device).eval()


def keep_directions(model: Model, trained: Any) -> None:
    """Offer only the `trained` directions: an imported run may hold one reference generator
    of a two-way model, and its other generator's fresh weights must not translate."""
    model.directions = tuple(d for d in type(model).directions if d in trained)  # type: ignore[misc]


def network_tensors(model: Model) -> dict[str, torch.Tensor]:
    """All network weights: the model's `state_dict()`, under `generators.` /
    `discriminators.` / `auxiliary.` prefixes."""
    return dict(model.state_dict())


def load_networks(model: Model, tensors: Mapping[str, torch.Tensor], source: Path) -> None:
    """The model's networks from a checkpoint's `tensors` (the averaged generators aside), all
    of them strictly, except that a file without auxiliary networks leaves them as they are:
    translating needs none (a file of generators only)."""
    weights = {k: v for k, v in tensors.items() if not k.startswith(EMA_PREFIX)}
    optional = () if any(k.startswith("auxiliary.") for k in weights) else ("auxiliary.",)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a shape that does not fit
        raise CheckpointError(f"{source} does not match the '{model.name}' networks of this "
                              f"version: {_first_problem(exc)}") from None
    missing = [k for k in missing if not k.startswith(optional)]
    if missing or unexpected:
        problem = (f"missing {', '.join(missing[:3])}" if missing else
                   f"unexpected {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{source} does not match the '{model.name}' networks of this "
                              f"version: {problem}")


def average_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The averaged generator weights stored in a checkpoint, keyed like `generators.state_dict()`."""
    return {k[len(EMA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}


# -- a new run from another run's weights (--init-from) -----------------------------------------
IMPORTED = "imported"  # metadata of a run `img2img import` wrote: sources, networks it holds
NETWORK_KINDS = {"generators": "generator", "discriminators": "discriminator",
                 "auxiliary": "auxiliary network"}  # a model's networks, and what one of each is


def initial_settings(model_cls: type[Model], ref: str | Path, runs_dir: Path) -> dict[str, Any]:
    """What a new run started from `ref` inherits so that its networks fit the weights: the
    model options it shares with that run, and its channel count."""
    meta = read_metadata(resolve_checkpoint(ref, runs_dir))
    recorded = meta.get("options", {})
    options = from_record(model_cls.Options, recorded, "model options")
    inherited = {k: getattr(options, k) for k in recorded if k in option_fields(model_cls.Options)}
    if "channels" in meta.get("spec", {}):
        inherited["channels"] = meta["spec"]["channels"]
    return inherited


def load_initial_weights(model: Model, ref: str | Path, runs_dir: Path
                         ) -> tuple[Path, list[str]]:
    """Copy the networks of run or checkpoint `ref` into `model` by name; return the weights
    file and the networks it had no trained weights for (they keep their fresh start)."""
    weights = resolve_checkpoint(ref, runs_dir)
    meta = read_metadata(weights)
    tensors = load_weights(weights)
    trained = meta.get(IMPORTED, {}).get("networks")  # an import also stores untrained ones
    fresh = []
    for kind, what in NETWORK_KINDS.items():
        for name, net in getattr(model, kind).items():
            prefix = f"{kind}.{name}."
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not part or (trained is not None and f"{kind}.{name}" not in trained):
                fresh.append(f"{what} {name}")
                continue
            try:
                net.load_state_dict(part)
            except RuntimeError as exc:
                raise CheckpointError(f"--init-from {ref}: its {what} '{name}' does not "
                                      f"fit this run's: {_first_problem(exc)}"
                                      f"{_option_differences(model, meta)}") from None
    return weights, fresh


def _first_problem(exc: RuntimeError) -> str:
    """The first specific line of a `load_state_dict` error (its first line names no layer)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0]).rstrip(".") if lines else str(exc)


def _option_differences(model: Model, meta: Mapping[str, Any]) -> str:
    ours = jsonable(model.options)
    theirs = {k: v for k, v in meta.get("options", {}).items() if k in ours and ours[k] != v}
    if not theirs:
        return ""
    flags = [f"--{'' if v else 'no-'}{k.replace('_', '-')}" if isinstance(v, bool)
             else f"--{k.replace('_', '-')} {v}" for k, v in theirs.items()]
    return f" (it was built with {' '.join(flags)})"
