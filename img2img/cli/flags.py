"""Settings dataclasses become command-line flags: each field of a frozen dataclass is one
`--kebab-case` option with the field's help text and default, so `TrainConfig` and every model's
`Options` share one mechanism. Also tells which flags the user typed, for preset precedence."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..training.configfile import field_type

TYPED = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _click_type(hint: Any, choices: Iterable[Any] | None, meta: Mapping[str, Any]) -> Any:
    bounds = {"min": meta.get("min", meta.get("gt")), "max": meta.get("max")}
    if hint in (int, float) and (bounds["min"] is not None or bounds["max"] is not None):
        if hint is int:
            return click.IntRange(**bounds, min_open="gt" in meta)
        return click.FloatRange(**bounds, min_open="gt" in meta)  # NaN: see validation.check
    if choices is not None:
        return click.Choice([str(c) for c in choices])
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice([str(c) for c in typing.get_args(hint)])
    if hint is Path:
        return click.Path(path_type=Path)
    return {int: int, float: float, str: str}.get(hint, str)


def _converter(hint: Any) -> Any:
    """Click hands choices back as strings; turn them into the field's type."""
    if hint in (int, float):
        return hint
    if typing.get_origin(hint) is tuple:
        return tuple
    if typing.get_origin(hint) is typing.Literal:
        values = {str(v): v for v in typing.get_args(hint)}
        return values.__getitem__
    return None


class SectionedCommand(click.Command):
    """A command whose `--help` lists its options under headings: an option's `help_section`
    names its heading (options without one come last, under "Other options")."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                title = getattr(param, "help_section", None) or "Other options"
                sections.setdefault(title, []).append(record)
        for title in sorted(sections, key=lambda t: t == "Other options"):  # stable: others last
            with formatter.section(title):
                formatter.write_dl(sections[title])


def dataclass_options(cls: type, defaults: Mapping[str, Any] | None = None,
                      sections: Mapping[str, str] | str | None = None) -> list[click.Option]:
    """One click option per field of `cls`; `defaults` override the field defaults shown;
    `sections` is the `--help` heading of every option, or one heading per field name."""
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    options = []
    for field in dataclasses.fields(cls):
        hint, optional = field_type(hints[field.name])
        default = defaults.get(field.name, field.default)
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        help_text = field.metadata.get("help", "")
        if hint is bool:
            opt = click.Option([f"{flag_name(field.name)}/--no-{field.name.replace('_', '-')}"],
                               default=default, show_default=True, help=help_text)
        elif typing.get_origin(hint) is tuple:  # a repeatable flag: --logger a --logger b
            opt = click.Option([flag_name(field.name)], multiple=True, default=tuple(default),
                               show_default=", ".join(default) or "none", help=help_text)
        else:
            choices = field.metadata.get("choices")
            shown = default if default is not None else None
            opt = click.Option([flag_name(field.name)],
                               type=_click_type(hint, choices, field.metadata),
                               default=str(shown) if choices and shown is not None else shown,
                               show_default=shown is not None, help=help_text,
                               required=default is dataclasses.MISSING and not optional)
        opt.img2img_field = field.name
        opt.help_section = sections if isinstance(sections, str) or sections is None \
            else sections.get(field.name)
        opt.img2img_convert = _converter(hint)
        options.append(opt)
    return options


def collect(ctx: click.Context, options: list[click.Option], values: Mapping[str, Any]
            ) -> tuple[dict[str, Any], set[str]]:
    """Field values from parsed click values, and the names of fields the user typed."""
    found, typed = {}, set()
    for opt in options:
        value = values[opt.name]
        if value is not None and opt.img2img_convert is not None:
            value = opt.img2img_convert(value)
        found[opt.img2img_field] = value
        if ctx.get_parameter_source(opt.name) in TYPED:
            typed.add(opt.img2img_field)
    return found, typed
