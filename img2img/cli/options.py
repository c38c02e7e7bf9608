"""Click building blocks that every command shares, built-in or a plugin's: choosing the run
(`--model RUN|CHECKPOINT` and `--runs-dir`), the device and the output (`-o/--out`), and the
catalog the running command line was built with. A plugin's command that uses them chooses its
run exactly as `convert`, `eval`, `sample` and `write` do."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..api import load
from ..errors import Img2ImgError
from ..inference.translator import Sampler, Translator
from ..registry.catalog import Catalog, catalog as installed_catalog
from ..runs import folders as runs
from ..training.settings import ENVIRONMENT

F = TypeVar("F", bound=Callable[..., Any])


def run_options(purpose: str = "translate") -> Callable[[F], F]:
    """Add `--model` (passed as `model_ref`), `--runs-dir` and `--device` to a command whose
    model `purpose` is "translate", "sample" or "any"; `open_run` turns their values into the
    model."""
    newest = "the newest run under --runs-dir" + (
        "" if purpose == "any" else f" of a model that {runs.PURPOSES[purpose]}")
    exported = ", a file `img2img export` wrote" if purpose == "translate" else ""

    def decorate(function: F) -> F:
        for option in reversed((
            click.option("--model", "model_ref", default=runs.LATEST, show_default=True,
                         metavar="RUN|CHECKPOINT",
                         help="a run folder (its latest checkpoint; RUN:best for the best "
                              f"evaluated one), a .safetensors checkpoint{exported}, or "
                              f"'latest': {newest}"),
            runs_dir_option("where 'latest' looks for runs"),
            device_option(),
        )):
            function = option(function)
        return function

    return decorate


def runs_dir_option(help: str = "folder that holds run folders") -> Callable[[F], F]:
    """`--runs-dir`, defaulting to $IMG2IMG_RUNS_DIR and then `runs`, as `train` does."""
    return click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
                        default=Path("runs"), show_default=True, envvar=ENVIRONMENT["runs_dir"],
                        show_envvar=True, help=help)


def device_option() -> Callable[[F], F]:
    """`--device`, defaulting to $IMG2IMG_DEVICE and then auto, as `train` does."""
    return click.option("--device", default="auto", show_default=True,
                        envvar=ENVIRONMENT["device"], show_envvar=True,
                        help="cuda, cuda:N, mps, cpu or auto (the best available)")


def output_option(default: Path | None = None, help: str = "where to write the output",
                  **kwargs: Any) -> Callable[[F], F]:
    """`-o/--out PATH`: what every command calls its output."""
    return click.option("-o", "--out", type=click.Path(path_type=Path), default=default,
                        show_default=default is not None, help=help, **kwargs)


def chosen_run(run: str | None, model_ref: str) -> str:
    """The run of a command that takes it first (`img2img eval RUN`) as well as by `--model`;
    naming two different ones is a usage error."""
    if run is not None and model_ref != runs.LATEST and run != model_ref:
        raise click.UsageError(f"two runs given: {run} and --model {model_ref}")
    return run or model_ref


def current_catalog() -> Catalog:
    """The catalog of the command line being run (tests build theirs from chosen plugins), or
    the installed one outside a command."""
    context = click.get_current_context(silent=True)
    found = (context.find_root().obj or {}).get("catalog") if context is not None else None
    return found if found is not None else installed_catalog()


def open_run(model_ref: str, runs_dir: Path, device: str, purpose: str = "translate",
             **load_options: Any) -> Translator | Sampler:
    """The model `--model`, `--runs-dir` and `--device` name, checked to fit `purpose`."""
    catalog = current_catalog()
    if model_ref == runs.LATEST and purpose != "any":
        model_ref = str(runs.newest_run_for(purpose, runs_dir, catalog.models))
    loaded = load(model_ref, device=device, runs_dir=runs_dir, catalog=catalog, **load_options)
    if purpose == "translate" and isinstance(loaded, Sampler):
        raise Img2ImgError(f"model '{loaded.name}' generates images from noise, it does not "
                           "translate them; use its own command (see `img2img --help`)")
    if purpose == "sample" and isinstance(loaded, Translator):
        raise Img2ImgError(f"{loaded.checkpoint} is a '{loaded.name}' model, which translates "
                           "images rather than drawing them from labels; use `img2img convert` "
                           "with it, or pass a run of a model that samples")
    return loaded


__all__ = ["chosen_run", "current_catalog", "device_option", "open_run", "output_option",
           "run_options"]
