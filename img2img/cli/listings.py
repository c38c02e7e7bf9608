"""`img2img plugins` (and `plugins new`), `models`, `presets` and `--version`: what is installed."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from ..registry.catalog import Catalog
from ..registry.loading import PluginManager
from ..scaffold import create_plugin
from .errors import Img2ImgGroup


def print_version(ctx: click.Context, pm: PluginManager, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    try:
        own = version("img2img")
    except PackageNotFoundError:
        own = "unknown"
    click.echo(f"img2img, version {own}")
    for info in pm.all_infos():
        status = " (failed to load)" if info.errors else ""
        click.echo(f"  {info.name} ({info.distribution} {info.version}){status}")
    ctx.exit()


def plugins_command(pm: PluginManager) -> click.Group:
    @click.group("plugins", cls=Img2ImgGroup, invoke_without_command=True)
    @click.pass_context
    def plugins(ctx: click.Context) -> None:
        """List loaded plugins: distribution, version, what each registered, and load errors.

        `img2img plugins new NAME` starts a new plugin package.
        """
        if ctx.invoked_subcommand is not None:
            return
        if not pm.infos:
            click.echo("No plugins loaded (check IMG2IMG_LOAD_PLUGINS).")
        for info in pm.all_infos():
            status = "FAILED" if info.errors else "ok"
            click.echo(f"{info.name}  ({info.distribution} {info.version})  {status}")
            if info.registered:
                click.echo(f"    registers: {', '.join(info.registered)}")
            for error in info.errors:
                click.echo(f"    error: {error}")

    @plugins.command("new")
    @click.argument("name")
    @click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("."), show_default=True,
                  help="folder to write the package folder in")
    def new(name: str, parent: Path) -> None:
        """Write a ready-to-install plugin package for a model called NAME.

        `img2img plugins new my-model` writes img2img-my-model/: a pyproject with the entry
        point, a working paired model in img2img_my_model/model.py, and a test calling
        img2img.testing.check_model. An existing folder is never overwritten.
        """
        folder = create_plugin(name, parent)
        click.echo(f"Created {folder}/ with the model '{name}'. Next:\n"
                   f"  pip install -e {folder}        # then: img2img plugins\n"
                   f"  pytest {folder}\n"
                   f"  img2img train {name} --help", err=True)
        click.echo(str(folder))
    return plugins


def models_command(catalog: Catalog) -> click.Command:
    @click.command("models")
    def models() -> None:
        """List the models you can train, with their data kind and presets."""
        if not catalog.models:
            click.echo("No models registered; install a plugin (see `img2img plugins`).")
        for name, cls in sorted(catalog.models.items()):
            presets = ", ".join(catalog.presets_for(name)) or "-"
            owner = catalog.owners[("model", name)].distribution
            click.echo(f"{name:<12} {cls.data:<9} {cls.summary}  [presets: {presets}; "
                       f"from {owner}]")
    return models


def presets_command(catalog: Catalog) -> click.Command:
    @click.command("presets")
    def presets() -> None:
        """List presets: one line each, then the settings each one applies."""
        if not catalog.presets:
            click.echo("No presets registered.")
        for (model, name), preset in sorted(catalog.presets.items()):
            click.echo(f"{name} ({model}): {preset.summary}")
            settings = {**preset.options, **preset.training}
            if settings:
                click.echo("    sets " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                   for k, v in settings.items()))
    return presets
