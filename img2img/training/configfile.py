"""Config files for `img2img train`: reading a TOML (or YAML) file, or a past run's config.json,
into checked settings of one model, and writing every resolved setting back out as TOML. Where
the file's values sit in the precedence is `settings.resolve_settings`' business."""
from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..data.atomic import write_text
from ..errors import Img2ImgError
from ..fields import describe, option_fields, problem
from ..runs.folders import CONFIG
from .settings import PRECEDENCE, SECTIONS, TrainConfig, training_fields

TABLES = ("options", "training")  # the two parts of a run's config.json, and of a file's tables
TOP_LEVEL = ("model", "preset", *TABLES)
SUFFIXES = ".toml, .yaml / .yml, or a run's config.json"


class ConfigFileError(Img2ImgError):
    """A config file that is missing, unreadable, or holds a setting that does not fit (a
    usage error: exit code 2)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class ConfigFile:
    """What a config file says: its model and preset (None when it names none) and its
    settings by field name, converted to the fields' types."""

    path: Path
    model: str | None = None
    preset: str | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def field_type(hint: Any) -> tuple[Any, bool]:
    """The field's type without Optional, and whether None is allowed."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return hint, False


def read(path: str | Path, model_cls: Any) -> ConfigFile:
    """Read the config file at `path` (or the config.json of the run folder `path`) for
    `model_cls`; every problem is a ConfigFileError naming the file and the key."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    raw = _parse(path)
    # A .json file is a run's record: beside the settings it holds its plugin, spec, processes...
    is_record = path.suffix.lower() == ".json"
    model = _string(raw, "model", path)
    if model is not None and model != model_cls.name:
        raise ConfigFileError(f"{path}: model = '{model}', but this is `img2img train "
                              f"{model_cls.name}`; use `img2img train {model} --config {path}`")
    fields = {**training_fields(), **option_fields(model_cls.Options)}
    hints = {**typing.get_type_hints(TrainConfig), **typing.get_type_hints(model_cls.Options)}
    settings: dict[str, Any] = {}
    for key, name, value in _entries(raw, path, model_cls, is_record):
        if name in settings:
            raise ConfigFileError(f"{path}: {name} is set twice (at the top level and in a "
                                  "table); keep one")
        settings[name] = convert(value, hints[name], fields[name], f"{path}: {key}")
    return ConfigFile(path, model, _string(raw, "preset", path), settings)


def _parse(path: Path) -> dict[str, Any]:
    """The file's contents as a mapping, by its suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigFileError(f"--config {path}: unknown config format '{suffix}' (use "
                              f"{SUFFIXES})")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--config {path}: cannot read it: {exc}") from None
    try:
        if suffix == ".json":
            raw = json.loads(text)
        elif suffix == ".toml":
            raw = _toml_module().loads(text)
        else:
            raw = _yaml_module().safe_load(text)
    except ConfigFileError:
        raise
    except Exception as exc:  # each parser has its own error class; all mean a malformed file
        detail = " ".join(str(exc).split())
        raise ConfigFileError(f"{path}: not valid {suffix[1:].upper()}: {detail}") from None
    if raw is None:  # an empty YAML file
        return {}
    if not isinstance(raw, dict):
        raise ConfigFileError(f"{path}: expected key = value settings, got a "
                              f"{type(raw).__name__}")
    return raw


def _toml_module() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    try:
        import tomli  # the backport of tomllib, a dependency on Python 3.10
    except ImportError:
        raise ConfigFileError("reading TOML on Python 3.10 needs tomli, a dependency of "
                              "img2img: pip install tomli") \
            from None
    return tomli


def _yaml_module() -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigFileError("YAML config files need PyYAML: pip install 'img2img[yaml]' (or write the "
                              "file as TOML)") from None
    return yaml


def _string(raw: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigFileError(f"{path}: {key} = {value!r}: expected a string (a name)")
    return value


def _entries(raw: Mapping[str, Any], path: Path, model_cls: Any, is_record: bool
             ) -> Iterator[tuple[str, str, Any]]:
    """(key as the file writes it, field name, value) for every setting in the file, flat or in
    the [options] and [training] tables; an unknown key is an error with the close matches."""
    known = {"options": option_fields(model_cls.Options), "training": training_fields()}
    for key, value in raw.items():
        if key in TABLES:
            if not isinstance(value, dict):
                raise ConfigFileError(f"{path}: {key} must be a table ([{key}]) of settings")
            for name, inner in value.items():
                _check_known(path, f"{key}.{name}", name, known[key], model_cls, key)
                yield f"{key}.{name}", name, inner
        elif key not in TOP_LEVEL and not is_record:
            _check_known(path, key, key, {**known["options"], **known["training"]}, model_cls,
                         None)
            yield key, key, value


def _check_known(path: Path, key: str, name: str, names: Mapping[str, Any], model_cls: Any,
                 table: str | None) -> None:
    if name in names:
        return
    other = {"options": training_fields(), "training": option_fields(model_cls.Options)}
    if table and name in other[table]:
        right = "training" if table == "options" else "options"
        raise ConfigFileError(f"{path}: '{key}' is in the wrong table: {name} belongs in "
                              f"[{right}] (or at the top level)")
    candidates = list(names) if table else [*names, *TOP_LEVEL]
    close = difflib.get_close_matches(name, candidates, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    where = {"options": f"{model_cls.name} option", "training": "training setting"}.get(
        table or "", f"{model_cls.name} option or training setting")
    raise ConfigFileError(f"{path}: unknown key '{key}': not a {where}{hint} (see `img2img "
                          f"train {model_cls.name} --print-config` for every key)")


def convert(value: Any, hint: Any, field: dataclasses.Field, where: str) -> Any:
    """`value` as the field's type (paths from strings, floats from ints), checked against its
    choices and range; `where` ("FILE: key") starts the error message."""
    base, optional = field_type(hint)
    choices = field.metadata.get("choices")
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        base = type(choices[0])
    if value is None and optional:
        return None
    converted, expected = _as_type(value, base)
    if expected:
        raise ConfigFileError(f"{where} = {_shown(value)}: expected {expected}")
    if choices is not None and converted not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise ConfigFileError(f"{where} = {_shown(value)}: expected one of {listed}")
    if problem(field.name, converted, field.metadata):
        raise ConfigFileError(f"{where} = {_shown(value)} is out of range: expected a value "
                              f"{describe(field.metadata)}")
    return converted


def _as_type(value: Any, base: Any) -> tuple[Any, str | None]:
    """(the converted value, None) or (None, what was expected instead)."""
    if base is bool:
        return (value, None) if isinstance(value, bool) else (None, "true or false")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return (value, None) if is_number and isinstance(value, int) else (None, "a whole number")
    if base is float:
        return (float(value), None) if is_number else (None, "a number")
    if base is Path:
        return (Path(value), None) if isinstance(value, str) else (None, "a path (a string)")
    if base is str:
        return (value, None) if isinstance(value, str) else (None, "a string")
    if typing.get_origin(base) is tuple:  # a repeatable flag: a list of strings, or just one
        items = [value] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(v, str) for v in items):
            return tuple(items), None
        return None, "a string or a list of strings"
    return value, None  # a type no flag parses either (flags read it as a string): as written


def _shown(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, (bool, str)) \
        else repr(value)


# -- writing --------------------------------------------------------------------------------------
def to_toml(model: str, preset: str | None, options: Any, config: TrainConfig) -> str:
    """A complete TOML file of every resolved setting, each under its help text; a setting
    that is not set (None) is a comment, since TOML has no null."""
    lines = [f"# img2img train {model}: every resolved setting. Use it with",
             f"#   img2img train {model} --config FILE",
             *textwrap.wrap(f"Precedence: {PRECEDENCE}.", 96, initial_indent="# ",
                            subsequent_indent="#   "),
             "", f"model = {_toml_value(model)}"]
    if preset is not None:
        lines.append(f"preset = {_toml_value(preset)}")
    lines += ["", "[options]"]
    lines += _toml_fields(options, [f.name for f in dataclasses.fields(options)])
    lines += ["", "[training]"]
    placed = [name for names in SECTIONS.values() for name in names]
    groups = {**SECTIONS, "Other": [n for n in training_fields() if n not in placed]}
    for section, names in groups.items():
        if names:
            lines += ["", f"# --- {section}"]
            lines += _toml_fields(config, names)
    return "\n".join(lines) + "\n"


def _toml_fields(settings: Any, names: list[str]) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(settings)}
    lines = []
    for name in names:
        help_text = fields[name].metadata.get("help", "")
        lines += textwrap.wrap(help_text, 96, initial_indent="# ", subsequent_indent="# ")
        value = getattr(settings, name)
        lines.append(f"# {name} = (not set)" if value is None
                     else f"{name} = {_toml_value(value)}")
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # inf, -inf and nan are TOML too
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # JSON string escapes are valid in TOML basic strings (\", \\, \n, \u followed by 4 hex digits).
    return json.dumps(str(value), ensure_ascii=False)


def write(path: str | Path, text: str) -> None:
    """Write `text` to `path` (-o FILE), atomically; a path that cannot be written is a
    usage error naming it."""
    try:
        write_text(Path(path), text)
    except OSError as exc:
        raise ConfigFileError(f"-o {path}: cannot write it: {exc.strerror or exc}") from None
