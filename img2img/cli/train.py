"""`img2img train MODEL` (one command per registered model, its flags from `TrainConfig` and the
model's `Options`, grouped in `--help`, plus --config / --print-config) and `img2img prepare`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import api
from ..distill import CORE_MODELS
from ..errors import SettingsError
from ..registry.catalog import Catalog
from ..training import configfile, distributed
from ..training.settings import PRECEDENCE, SECTION_OF, TrainConfig, environment_defaults
from .errors import Img2ImgGroup
from .flags import SectionedCommand, collect, dataclass_options


def train_group(catalog: Catalog) -> click.Group:
    @click.group("train", cls=Img2ImgGroup)
    def train() -> None:
        """Train a model. Each model has its own flags: `img2img train MODEL --help`."""

    for name in sorted({*catalog.models, *CORE_MODELS}):
        train.add_command(_train_command(catalog, name))
    return train


def prepare_group(catalog: Catalog) -> click.Group:
    @click.group("prepare", cls=Img2ImgGroup)
    def prepare() -> None:
        """Prepare training data (the sub-commands come from plugins: `img2img prepare --help`)."""

    for command in catalog.prepare_commands.values():
        prepare.add_command(command)
    return prepare


def _train_command(catalog: Catalog, name: str) -> click.Command:
    model_cls = api.model_class(catalog, name)
    training = dataclass_options(TrainConfig, _shown_defaults(model_cls), SECTION_OF)
    model_opts = dataclass_options(model_cls.Options, sections=f"Model options ({name})")
    params: list[click.Parameter] = [*model_opts, *training]
    params.append(click.Option(["--resume"], is_flag=False, flag_value="latest", default=None,
                               metavar="[RUN|CHECKPOINT]",
                               help="continue a run exactly where it stopped: a run folder, a "
                                    "checkpoint file, or nothing for the newest run"))
    params += _configuration_options(catalog.presets_for(name))

    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        options, typed_opts = collect(ctx, model_opts, values)
        config, typed_cfg = collect(ctx, training, values)
        given = {k: options[k] for k in typed_opts} | {k: config[k] for k in typed_cfg}
        common = {"preset": values.get("preset"), "config": values["config_file"],
                  "catalog": catalog}
        if values["print_config"]:
            _print_config(name, values["resume"], values["config_output"], common, given)
            return
        if values["config_output"] is not None:
            raise click.UsageError("-o/--output goes with --print-config (where to write it)")
        run_dir = api.train(name, resume=values["resume"], **common, **given)
        if distributed.from_environment().is_main:
            click.echo(str(run_dir))

    help_text = f"{model_cls.summary}\n\nData: {model_cls.data}."
    return SectionedCommand(name, params=params, callback=callback, help=help_text,
                            short_help=model_cls.summary,
                            context_settings={"show_default": True})


def _shown_defaults(model_cls: Any) -> dict[str, Any]:
    """The training defaults `--help` shows: the IMG2IMG_* environment's, then the model's."""
    try:
        environment = environment_defaults()
    except SettingsError:  # reported when a run resolves its settings, not while building help
        environment = {}
    return {**environment, **model_cls.training_defaults}


def _configuration_options(presets: dict[str, Any]) -> list[click.Option]:
    """--preset (when the model has presets), --config, --print-config and -o, under their
    own `--help` heading."""
    options = [click.Option(["--preset"], type=click.Choice(sorted(presets)),
                            help="domain settings (typed flags still win): " + "; ".join(
                                f"{p.name}: {p.summary}" for p in presets.values()))
               ] if presets else []
    options += [
        click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                     metavar="FILE",
                     help="read settings from a TOML (or YAML) file, flat `key = value` by "
                          "field name or in [options] and [training] tables, or from a past "
                          "run's config.json (its preset too, unless --preset is given). "
                          f"Precedence: {PRECEDENCE}"),
        click.Option(["--print-config"], is_flag=True, default=False,
                     help="write every resolved setting as a TOML file for --config (to "
                          "stdout, or -o FILE) and exit without training"),
        click.Option(["-o", "--output", "config_output"], type=click.Path(path_type=Path),
                     metavar="FILE", help="with --print-config: the file to write"),
    ]
    for option in options:
        option.help_section = "Configuration"
    return options


def _print_config(name: str, resume: Any, output: Path | None, common: dict[str, Any],
                  given: dict[str, Any]) -> None:
    if resume is not None:
        raise click.UsageError("--print-config shows a new run's settings; a resumed run's "
                               "are in its config.json")
    text = api.settings_toml(name, **common, **given)
    if output is None:
        click.echo(text, nl=False)
    else:
        configfile.write(output, text)
        click.echo(f"Wrote {output}", err=True)
