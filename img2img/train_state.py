"""What a checkpoint records besides weights: the random-number state (so a resumed run draws
the same numbers as an uninterrupted one) and the settings record that makes a checkpoint
self-describing (model, plugin, options, image spec, training settings)."""
from __future__ import annotations

import dataclasses
import random
import typing
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from . import runs
from .ema import ema_tensors
from .errors import CheckpointError
from .model import ImageSpec, Model, option_fields


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
    meta = runs.read_metadata(weights)
    if meta.get("model") != model_cls.name:
        raise CheckpointError(f"{weights} holds a '{meta.get('model')}' model, "
                              f"not '{model_cls.name}'")
    options = from_record(model_cls.Options, meta.get("options", {}), "model options")
    model = model_cls(options, spec=spec_from_record(meta.get("spec", {})))
    tensors = runs.load_weights(weights, device)
    load_networks(model, tensors, weights)
    averaged = ema_tensors(tensors)
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
