"""The `img2img` command line: click commands that parse, call one core function and print.
The root group and `train` are built from the catalog, so every registered model gets its own
`train <model>` command with its own flags; errors a user can fix are one line on stderr with a
non-zero exit code, tracebacks only with `--debug`. Nothing else in the core imports it; a
plugin's command uses the options every command shares (`run_options`, `open_run`, ...)."""
from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..registry.catalog import catalog as build_catalog
from ..registry.loading import PluginManager, load_plugins
from ..training.distributed import from_environment
from .distill import distill_command
from .errors import Img2ImgGroup
from .export import export_command
from .health import health
from .import_run import import_command
from .listings import models_command, plugins_command, presets_command, print_version
from .options import (
    chosen_run, device_option, open_run, output_option, run_options, runs_dir_option,
)
from .run_commands import convert_command, eval_command, eval_video_command
from .serve import serve_command
from .train import prepare_group, train_group


def _setup_logging() -> None:
    logger = logging.getLogger("img2img")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def build_cli(pm: PluginManager | None = None) -> click.Group:
    """The whole command tree for the plugins in `pm` (all installed plugins by default)."""
    pm = pm if pm is not None else load_plugins()
    catalog = build_catalog(pm)

    @click.group(cls=Img2ImgGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                     "max_content_width": 100})
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @click.option("--version", is_flag=True, expose_value=False, is_eager=True,
                  callback=lambda ctx, _, value: print_version(ctx, pm, value),
                  help="Show the version of img2img and of every loaded plugin, and exit.")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        """Train and run image-to-image GANs: Pix2Pix, CycleGAN and any model a plugin adds.

        \b
        img2img train --help             models you can train
        img2img train cyclegan --a photos/ --b paintings/
        img2img convert photo.jpg        translate with the newest run under ./runs
        img2img plugins                  what is installed, and any plugin errors
        """
        _setup_logging()
        for error in pm.errors() if from_environment().is_main else ():  # once per torchrun job
            click.echo(f"warning: {error}", err=True)
        ctx.obj = {"pm": pm, "catalog": catalog}

    cli.add_command(train_group(catalog))
    cli.add_command(prepare_group(catalog))
    for command in (convert_command(catalog), eval_command(catalog),
                    eval_video_command(catalog), plugins_command(pm),
                    models_command(catalog), import_command(catalog), export_command(catalog),
                    presets_command(catalog), serve_command(catalog), health,
                    distill_command()):
        cli.add_command(command)
    for command in catalog.commands.values():
        cli.add_command(command)
    return cli


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return build_cli().main(args=argv, prog_name="img2img")


__all__ = ["build_cli", "chosen_run", "device_option", "main", "open_run", "output_option",
           "run_options", "runs_dir_option"]
