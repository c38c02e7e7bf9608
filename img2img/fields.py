"""Settings fields, declared once: a field of a frozen settings dataclass (`TrainConfig`, a
model's `Options`) carries its default, its help text, its choices and its valid range, from
which the command line makes its flag and `--help`. `option` declares such a field and
`new_default` gives a subclass's inherited field another default, keeping the rest.

Ranges in a field's metadata are `min`, `max` (inclusive) or `gt` (strictly greater); `check`
enforces them on any settings object before a run folder exists. NaN is never in range."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .errors import SettingsError

RECORDED = "recorded"  # field metadata: "when set" (see recorded_when_set)


def option(default: Any, help: str, *, choices: Sequence[Any] | None = None,
           min: float | None = None, max: float | None = None, gt: float | None = None) -> Any:
    """A settings field: its default, the help text its `--flag` shows, and optionally the
    values it may take (`choices`) or its range (`min`, `max` inclusive; `gt` strictly greater).
    Use it as `lambda_l1: float = img2img.option(100.0, "weight of the L1 loss", min=0)`."""
    limits = {"choices": tuple(choices) if choices is not None else None,
              "min": min, "max": max, "gt": gt}
    return dataclasses.field(default=default, metadata={
        "help": help, **{k: v for k, v in limits.items() if v is not None}})


def new_default(base: type, name: str, default: Any) -> Any:
    """Field `name` of settings class `base` with another default, keeping its help, choices and
    range: `norm: str = img2img.new_default(NetworkOptions, "norm", "instance")` in a subclass."""
    return dataclasses.field(default=default, metadata=option_fields(base)[name].metadata)


def recorded_when_set(field: Any) -> Any:
    """A settings field (an `option(...)`) that runs record (config.json, checkpoints) only when
    it differs from its default, so a run that leaves a newer feature off records exactly what
    it recorded before the feature existed; a record without it reads back as the default."""
    return dataclasses.field(default=field.default,
                             metadata={**field.metadata, RECORDED: "when set"})


def unrecorded(settings: Any) -> set[str]:
    """The names of `settings`' `recorded_when_set` fields that hold their default."""
    return {f.name for f in dataclasses.fields(settings)
            if f.metadata.get(RECORDED) == "when set" and getattr(settings, f.name) == f.default}


def option_fields(options_cls: type) -> dict[str, dataclasses.Field]:
    """The fields of an Options dataclass by name."""
    return {f.name: f for f in dataclasses.fields(options_cls)}


def describe(meta: Any) -> str:
    """The range a field's metadata declares, as `--help` and error messages write it."""
    parts = []
    if "gt" in meta:
        parts.append(f"> {meta['gt']}")
    if "min" in meta:
        parts.append(f">= {meta['min']}")
    if "max" in meta:
        parts.append(f"<= {meta['max']}")
    return " and ".join(parts)


def problem(name: str, value: Any, meta: Any) -> str | None:
    """Why `value` does not fit the field's declared range, or None."""
    if not any(k in meta for k in ("min", "max", "gt")) or value is None or \
            isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and math.isnan(value):
        return f"{flag} nan is not a number; expected a value {describe(meta)}"
    outside = ("gt" in meta and not value > meta["gt"]) or \
        ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"])
    return f"{flag} {value} is out of range: expected a value {describe(meta)}" \
        if outside else None


def check(settings: Any) -> None:
    """Raise SettingsError naming the first field of a settings dataclass out of its range."""
    for field in dataclasses.fields(settings):
        message = problem(field.name, getattr(settings, field.name), field.metadata)
        if message:
            raise SettingsError(message)
