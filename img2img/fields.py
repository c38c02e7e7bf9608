"""Valid ranges of settings, declared where the settings are: a dataclass field's metadata may
say `min`, `max` (inclusive) or `gt` (strictly greater). `check` enforces them on any settings
object, `TrainConfig` and every model's `Options` alike, before a run folder exists; the command
line also shows them in `--help`. NaN is never in range."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import Img2ImgError


class SettingsError(Img2ImgError):
    """A setting outside its valid range (a usage error: exit code 2)."""

    exit_code = 2


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
