"""`img2img train MODEL` (one command per registered model, its flags from `TrainConfig` and the
model's `Options`, grouped in `--help`) and `img2img prepare`."""
from __future__ import annotations

from typing import Any

import click

from .. import api, distributed
from ..catalog import Catalog
from ..config import SECTION_OF, TrainConfig
from ..flags import SectionedCommand, collect, dataclass_options
from .errors import Img2ImgGroup


def train_group(catalog: Catalog) -> click.Group:
    @click.group("train", cls=Img2ImgGroup)
    def train() -> None:
        """Train a model. Each model has its own flags: `img2img train MODEL --help`."""

    for name in sorted(catalog.models):
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
    model_cls = catalog.model(name)
    training = dataclass_options(TrainConfig, model_cls.training_defaults, SECTION_OF)
    model_opts = dataclass_options(model_cls.Options, sections=f"Model options ({name})")
    presets = catalog.presets_for(name)
    params: list[click.Parameter] = [*model_opts, *training]
    params.append(click.Option(["--resume"], is_flag=False, flag_value="latest", default=None,
                               metavar="[RUN|CHECKPOINT]",
                               help="continue a run exactly where it stopped: a run folder, a "
                                    "checkpoint file, or nothing for the newest run"))
    if presets:
        params.append(click.Option(["--preset"], type=click.Choice(sorted(presets)),
                                   help="domain settings (typed flags still win): " + "; ".join(
                                       f"{p.name}: {p.summary}" for p in presets.values())))

    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        options, typed_opts = collect(ctx, model_opts, values)
        config, typed_cfg = collect(ctx, training, values)
        given = {k: options[k] for k in typed_opts} | {k: config[k] for k in typed_cfg}
        run_dir = api.train(name, preset=values.get("preset"), resume=values["resume"],
                            catalog=catalog, **given)
        if distributed.from_environment().is_main:
            click.echo(str(run_dir))

    help_text = f"{model_cls.summary}\n\nData: {model_cls.data}."
    return SectionedCommand(name, params=params, callback=callback, help=help_text,
                            short_help=model_cls.summary,
                            context_settings={"show_default": True})
