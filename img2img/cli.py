"""The `img2img` command line. The root group and `train` are built from the catalog, so every
registered model gets its own `train <model>` command with its own flags; errors a user can fix
are one line on stderr with a non-zero exit code, tracebacks only with `--debug`."""
from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from . import api
from .catalog import Catalog, catalog as build_catalog
from .commands import open_run, output_option, run_options
from .convert import convert as run_convert
from .errors import Img2ImgError
from .flags import TYPED, SectionedCommand, collect, dataclass_options
from .inference import DEFAULT_TILE
from .plugins import PluginManager, load_plugins
from .scaffold import create_plugin
from .config import SECTION_OF, TrainConfig

class _Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Img2ImgGroup(click.Group):
    """Turns our errors into one clean line (or the full traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Img2ImgError as exc:
            if _debug(ctx):
                raise
            raise _Failure(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if _debug(ctx):
                raise
            raise _Failure(f"internal error: {type(exc).__name__}: {exc}\n"
                           "Run again with `img2img --debug ...` for the traceback.", 1) from None


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("IMG2IMG_DEBUG", "") not in ("", "0")


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
                  callback=lambda ctx, _, value: _print_version(ctx, pm, value),
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
        for error in pm.errors():
            click.echo(f"warning: {error}", err=True)
        ctx.obj = {"pm": pm, "catalog": catalog}

    cli.add_command(_train_group(catalog))
    cli.add_command(_prepare_group(catalog))
    for command in (convert_command(catalog), eval_command(catalog), plugins_command(pm),
                    models_command(catalog),
                    presets_command(catalog)):
        cli.add_command(command)
    for command in catalog.commands.values():
        cli.add_command(command)
    return cli


# -- train --------------------------------------------------------------------------------------
def _train_group(catalog: Catalog) -> click.Group:
    @click.group("train", cls=Img2ImgGroup)
    def train() -> None:
        """Train a model. Each model has its own flags: `img2img train MODEL --help`."""

    for name in sorted(catalog.models):
        train.add_command(_train_command(catalog, name))
    return train


def _prepare_group(catalog: Catalog) -> click.Group:
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
        click.echo(str(run_dir))

    help_text = f"{model_cls.summary}\n\nData: {model_cls.data}."
    return SectionedCommand(name, params=params, callback=callback, help=help_text,
                            short_help=model_cls.summary,
                            context_settings={"show_default": True})


# -- convert ------------------------------------------------------------------------------------
def convert_command(catalog: Catalog) -> click.Command:
    @click.command("convert", cls=SectionedCommand, context_settings={"show_default": True})
    @click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
    @output_option(help="output folder (default: converted/), or the output file for one input")
    @run_options("translate")
    @click.option("--direction", default=None,
                  help="a_to_b or b_to_a for two-way models (default: the model's first)")
    @click.option("--size", type=click.IntRange(min=8), default=None,
                  help="translate at this short side, then resize back (default: as is)")
    @click.option("--style", "--label", "label", default=None, metavar="NAME",
                  help="runs trained on style or class sub-folders (e.g. several writers): "
                       "which one to produce (default: the first)")
    @click.option("--tile", type=click.IntRange(min=32), default=DEFAULT_TILE,
                  help="images larger than this are translated in overlapping tiles, so "
                       "memory stays bounded")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="same-sized images translated together (default: 4 on a GPU, 1 on a "
                       "CPU, where larger batches only add cache misses)")
    @click.pass_context
    def convert(ctx: click.Context, inputs: tuple[str, ...], out: Path | None, model_ref: str,
                runs_dir: Path, direction: str | None, size: int | None, label: str | None,
                tile: int, batch_size: int | None, device: str, **pipeline_flags: Any) -> None:
        """Translate images (files, folders, globs) with a trained model.

        Each output keeps its input's name, size and alpha channel; the format follows the
        extension. Inputs are never overwritten.
        """
        translator = open_run(model_ref, runs_dir, device, "translate", tile=tile)
        click.echo(f"Using {translator.checkpoint} ({translator.name})", err=True)
        pipeline_options = _pipeline_options(ctx, translator, pipeline_flags)
        if batch_size is None:
            batch_size = 1 if translator.device.type == "cpu" else 4
        with tqdm(total=None, unit="image", disable=not sys.stderr.isatty()) as bar:
            outcome = run_convert(translator, list(inputs), out, direction=direction, size=size,
                                  label=label, batch_size=batch_size, progress=bar,
                                  pipeline_options=pipeline_options)
        for src, message in outcome.failed:
            click.echo(f"error: {src}: {message}", err=True)
        if outcome.converted:
            folders = sorted({str(dst.parent) for _, dst in outcome.converted})
            click.echo(f"Converted {len(outcome.converted)} image(s) into {', '.join(folders)}",
                       err=True)
        for _, dst in outcome.converted:
            click.echo(str(dst))
        if outcome.failed:
            raise _Failure(f"{len(outcome.failed)} input(s) failed", 1)

    # Presets that carry a convert pipeline add their own flags (e.g. --faces), listed in
    # --help under a heading naming the presets they serve.
    served: dict[str, list[str]] = {}
    for (model, name), preset in sorted(catalog.presets.items()):
        for option in getattr(preset.pipeline, "convert_options", ()):
            served.setdefault(option.name, []).append(f"{model}/{name}")
            if option.name not in {p.name for p in convert.params}:
                convert.params.append(option)
    for param in convert.params:
        if param.name in served:
            param.help_section = f"Options for runs trained with preset {', '.join(served[param.name])}"
        elif isinstance(param, click.Option) and param.name != "help":
            param.help_section = "Options"
    return convert


def _pipeline_options(ctx: click.Context, translator: Any, flags: dict[str, Any]
                      ) -> dict[str, Any] | None:
    """The flags the run's pipeline takes; a typed flag it does not take is an error."""
    pipeline = translator.pipeline
    accepted = {o.name for o in getattr(pipeline, "convert_options", ())}
    typed = {k for k in flags if ctx.get_parameter_source(k) in TYPED}
    foreign = typed - accepted
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in sorted(foreign))
        preset = f", preset {translator.preset}" if translator.preset else ", no preset"
        raise Img2ImgError(f"{names} does not apply to this run ({translator.name}{preset})")
    if pipeline is None:
        return None
    return {k: v for k, v in flags.items() if k in accepted}


# -- eval ---------------------------------------------------------------------------------------
def eval_command(catalog: Catalog) -> click.Command:
    @click.command("eval", context_settings={"show_default": True})
    @click.argument("run", default=None, required=False, metavar="[RUN]")
    @run_options("any")
    @click.option("--data", type=click.Path(path_type=Path), required=True,
                  help="held-out data in the layout the model trains on")
    @click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
                  help="local torchvision Inception-v3 weights file, for FID and KID")
    @click.option("--limit", type=click.IntRange(min=2), default=None,
                  help="evaluate at most this many items")
    @click.option("--batch-size", type=click.IntRange(min=1), default=8)
    @output_option(help="where to write the measurements as JSON (default: RUN/eval.json)")
    def evaluate_run(run: str | None, model_ref: str, runs_dir: Path, device: str, data: Path,
                     inception_weights: Path | None, limit: int | None, batch_size: int,
                     out: Path | None) -> None:
        """Measure a trained run on held-out data: PSNR/SSIM/L1 for paired data, sliced
        Wasserstein distance for unpaired and labelled data, FID/KID with --inception-weights.

        The run is --model (RUN may also be given first, as in `img2img eval RUN --data DIR`).
        """
        if run is not None and model_ref != "latest" and run != model_ref:
            raise click.UsageError(f"two runs given: {run} and --model {model_ref}")
        loaded = open_run(run or model_ref, runs_dir, device, "any")
        record, target = api.evaluate_run(loaded, data, inception_weights=inception_weights,
                                          limit=limit, batch_size=batch_size, out=out)
        results = {k: v for k, v in record.items() if k not in ("checkpoint", "data", "items")}
        width = max(len(k) for k in results)
        for key, value in results.items():
            click.echo(f"{key:<{width}}  {value:.4f}")
        click.echo(f"Wrote {target}", err=True)
    return evaluate_run


def _print_version(ctx: click.Context, pm: PluginManager, value: bool) -> None:
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


# -- listings -----------------------------------------------------------------------------------
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


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return build_cli().main(args=argv, prog_name="img2img")
