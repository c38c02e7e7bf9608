"""The validated registry of what plugins provide: models, presets, commands and loggers. It is
built by calling each plugin's `register_*` hooks one plugin at a time, so a plugin that
registers something invalid or a taken name is reported against its own distribution and
skipped.

`catalog()` is the public, cached entry point for what is installed (as timm has `list_models`):
inference, the command line, plugins and scripts all ask it; `list_models()` and
`list_presets()` name what it holds."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import click
import numpy as np

from ..errors import Img2ImgError
from ..fields import option_fields
from ..model import DATA_KINDS, Model
from ..training.loggers import Logger, logger_problem
from ..training.settings import TrainConfig
from .loading import PluginInfo, PluginManager, load_plugins

NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
# The settings every model shares; a model's own options may not reuse these names.
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
# Top-level commands of the core, which a plugin's command may not take.
BUILTIN_COMMANDS = frozenset({"train", "prepare", "plugins", "models", "presets", "convert",
                              "eval", "eval-video", "import", "export", "serve", "distill"})


@runtime_checkable
class ConvertPipeline(Protocol):
    """What a preset's `pipeline` is: how `img2img convert` (and `Translator.convert_image`)
    handles one decoded image of a run trained with that preset, e.g. find the faces, translate
    each and paste them back.

    `convert(translate, image, *, source, **options)` gets `translate` (runs the model on an
    HxW or HxWxC uint8/uint16 array and returns the same kind; `translate.spec` is the run's
    `ImageSpec`: channels, training size, classes), the decoded `image`, `source`
    (the input file, or None for an image from Python; always passed, for messages) and, as
    keyword arguments, the values of its own `convert_options`: click options that become
    `img2img convert` flags (shown under a heading for the preset). Checked when the catalog is
    built."""

    convert_options: Sequence[click.Option]

    def convert(self, translate: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                source: str | Path | None = None, **options: Any) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Preset:
    """Domain know-how as data: option and training values for one model.

    Precedence when training: field default < model's training defaults < preset < typed flag.
    A run remembers its preset. `pipeline` may carry code for `convert` on such runs: a
    `ConvertPipeline` (e.g. face detection and paste-back)."""

    name: str
    model: str
    summary: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pipeline: Any = None


@dataclasses.dataclass
class Catalog:
    models: dict[str, type[Model]] = dataclasses.field(default_factory=dict)
    presets: dict[tuple[str, str], Preset] = dataclasses.field(default_factory=dict)
    commands: dict[str, click.Command] = dataclasses.field(default_factory=dict)
    prepare_commands: dict[str, click.Command] = dataclasses.field(default_factory=dict)
    loggers: dict[str, type[Logger]] = dataclasses.field(default_factory=dict)
    owners: dict[tuple[str, str], PluginInfo] = dataclasses.field(default_factory=dict)

    def model(self, name: str) -> type[Model]:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none (is a plugin installed?)"
            raise Img2ImgError(f"unknown model '{name}'; installed models: {known}")
        return self.models[name]

    def presets_for(self, model: str) -> dict[str, Preset]:
        return {p.name: p for (m, _), p in sorted(self.presets.items()) if m == model}

    def preset(self, model: str, name: str) -> Preset:
        found = self.presets_for(model)
        if name not in found:
            known = ", ".join(found) or "none"
            raise Img2ImgError(f"model '{model}' has no preset '{name}'; presets: {known}")
        return found[name]


def model_problems(cls: Any) -> list[str]:
    """What is wrong with a registered model class (empty when it honours the contract)."""
    if not (inspect.isclass(cls) and issubclass(cls, Model)):
        return [f"{cls!r} is not a subclass of img2img.Model"]
    problems = []
    if not isinstance(cls.name, str) or not NAME.match(cls.name):
        problems.append(f"{cls.__name__}.name must be a lower-case command name, got {cls.name!r}")
    if cls.data not in DATA_KINDS:
        problems.append(f"{cls.__name__}.data must be one of {DATA_KINDS}, got {cls.data!r}")
    options = cls.Options
    if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):
        problems.append(f"{cls.__name__}.Options must be a frozen dataclass")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        problems.append(f"{cls.__name__} does not implement: {', '.join(missing)}")
    if not cls.directions and cls.sample is Model.sample:
        problems.append(f"{cls.__name__} neither declares `directions` (a model that translates) "
                        "nor implements `sample` (a model that generates from noise)")
    return problems


def pipeline_problems(preset: Preset) -> list[str]:
    """What keeps a preset's convert pipeline from being a `ConvertPipeline` (empty if none)."""
    pipeline, where = preset.pipeline, f"preset '{preset.name}': its pipeline"
    if pipeline is None:
        return []
    if not callable(getattr(pipeline, "convert", None)):
        return [f"{where} has no convert(translate, image, *, source, **options) method"]
    parameters = inspect.signature(pipeline.convert).parameters.values()
    if not any(p.name == "source" or p.kind is p.VAR_KEYWORD for p in parameters):
        return [f"{where}'s convert() must take the keyword `source` (the input file, always "
                "passed)"]
    options = getattr(pipeline, "convert_options", None)
    if options is None or not all(isinstance(o, click.Option) for o in options):
        return [f"{where}'s convert_options must be a list of click options (empty for none)"]
    return []


def preset_problems(preset: Any, models: Mapping[str, type[Model]],
                    training_fields: set[str]) -> list[str]:
    if not isinstance(preset, Preset):
        return [f"{preset!r} is not an img2img.Preset"]
    if preset.model not in models:
        return [f"preset '{preset.name}' is for unknown model '{preset.model}'"]
    problems = []
    unknown = set(preset.options) - set(option_fields(models[preset.model].Options))
    if unknown:
        problems.append(f"preset '{preset.name}' sets unknown {preset.model} options: "
                        f"{', '.join(sorted(unknown))}")
    unknown = set(preset.training) - training_fields
    if unknown:
        problems.append(f"preset '{preset.name}' sets unknown training settings: "
                        f"{', '.join(sorted(unknown))}")
    return problems + pipeline_problems(preset)


def _collect(pm: PluginManager, hook: str) -> list[tuple[PluginInfo, Any]]:
    """Call `hook` on each plugin separately; a hook that raises is that plugin's error."""
    found = []
    # Load order, so the first plugin to claim a name keeps it (pluggy calls last-first).
    for impl in getattr(pm.hook, hook).get_hookimpls():
        info = pm.infos.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "local", "")
        items: list[Any] = []
        pm.trace.root.get("hook")(f"{hook} from plugin '{impl.plugin_name}'")
        try:
            impl.function(register=items.append)
        except Exception as exc:
            pm.fail(info, f"{hook} raised {type(exc).__name__}: {exc}")
            continue
        found.extend((info, item) for item in items)
    return found


def _claim(cat: Catalog, pm: PluginManager, info: PluginInfo, key: tuple[str, str],
           label: str) -> bool:
    owner = cat.owners.get(key)
    if owner is not None:
        pm.fail(info, f"{label} is already registered by {owner.distribution} "
                      f"(plugin '{owner.name}'); skipped")
        return False
    cat.owners[key] = info
    info.registered.append(label)
    return True


def build_catalog(pm: PluginManager, training_fields: Set[str] = TRAIN_FIELDS,
                  reserved_commands: Set[str] = BUILTIN_COMMANDS) -> Catalog:
    """Ask every plugin what it registers, validate it, and index it by name."""
    cat = Catalog()
    for info, cls in _collect(pm, "register_models"):
        problems = model_problems(cls)
        clash = set(option_fields(cls.Options)) & training_fields if not problems else set()
        if clash:
            problems.append(f"{cls.__name__}.Options reuses training setting names: "
                            f"{', '.join(sorted(clash))}")
        if problems:
            pm.fail(info, "; ".join(problems))
        elif _claim(cat, pm, info, ("model", cls.name), f"model {cls.name}"):
            cat.models[cls.name] = cls
    for info, preset in _collect(pm, "register_presets"):
        if pm.incomplete and isinstance(preset, Preset) and preset.model not in cat.models:
            pm.trace.root.get("hook")(f"preset {preset.model}/{preset.name} skipped: model "
                                      f"'{preset.model}' is not loaded")
            continue
        problems = preset_problems(preset, cat.models, training_fields)
        if problems:
            pm.fail(info, "; ".join(problems))
        elif _claim(cat, pm, info, ("preset", f"{preset.model}/{preset.name}"),
                    f"preset {preset.model}/{preset.name}"):
            cat.presets[(preset.model, preset.name)] = preset
    for hook, found, label, reserved in (
            ("register_commands", cat.commands, "command", reserved_commands),
            ("register_prepare_commands", cat.prepare_commands, "prepare command", set())):
        for info, command in _collect(pm, hook):
            if not isinstance(command, click.Command) or not command.name:
                pm.fail(info, f"{command!r} is not a named click command")
            elif command.name in reserved:
                pm.fail(info, f"command '{command.name}' is a built-in command; skipped")
            elif _claim(cat, pm, info, (label, command.name), f"{label} {command.name}"):
                found[command.name] = command
    _collect_loggers(cat, pm)
    return cat


def _collect_loggers(cat: Catalog, pm: PluginManager) -> None:
    for info, cls in _collect(pm, "register_loggers"):
        problem = logger_problem(cls)
        if problem:
            pm.fail(info, problem)
        elif _claim(cat, pm, info, ("logger", cls.name), f"logger {cls.name}"):
            cat.loggers[cls.name] = cls


@functools.cache
def _installed() -> Catalog:
    return build_catalog(load_plugins())


def catalog(pm: PluginManager | None = None) -> Catalog:
    """The registry of every installed plugin (built once per process and cached), or, given a
    plugin manager, of the plugins it holds (built afresh)."""
    return _installed() if pm is None else build_catalog(pm)


def list_models() -> list[str]:
    """The names of the installed models (`img2img.train(name, ...)`, `img2img train NAME`)."""
    return sorted(catalog().models)


def list_presets(model: str | None = None) -> list[str]:
    """The installed presets: for `model`, their names; without one, `model/name` for all."""
    presets = sorted(catalog().presets)
    if model is None:
        return [f"{m}/{name}" for m, name in presets]
    catalog().model(model)  # an unknown model is an error, not an empty list
    return [name for m, name in presets if m == model]
