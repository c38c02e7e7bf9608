"""`img2img sample`: draw images of chosen classes from a trained model that samples (cgan or any
plugin model without translation directions) and write them as a grid or one file each."""
from __future__ import annotations

import secrets
from pathlib import Path

import click
import torch

import img2img
from img2img import runs

from .sampling import ALL, newest_sampling_run, resolve_labels, write_samples


@click.command("sample", context_settings={"show_default": True})
@click.option("--label", "labels", multiple=True, default=(ALL,), metavar="NAME|INDEX|all",
              help="class to draw, by folder name or index; repeat for several; 'all' draws "
                   "every class, one row each")
@click.option("-n", "--count", type=click.IntRange(min=1), default=8, help="images per label")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="grid file (default: sampled.png), or with --separate a folder (default: "
                   "sampled/)")
@click.option("--separate", is_flag=True, help="write one PNG per image, <class>_<k>.png")
@click.option("--columns", type=click.IntRange(min=1), default=None,
              help="images per grid row (default: -n with several labels, else a square)")
@click.option("--seed", type=int, default=None,
              help="random seed for repeatable images (default: a fresh one, printed)")
@click.option("--model", "model_ref", default="latest", metavar="RUN|CHECKPOINT",
              help="run folder or checkpoint; 'latest' is the newest sampling run under --runs-dir")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"),
              help="where 'latest' looks for runs")
@click.option("--device", default="auto", help="cuda, cuda:N, mps, cpu or auto")
def sample(labels: tuple[str, ...], count: int, out: Path | None, separate: bool,
           columns: int | None, seed: int | None, model_ref: str, runs_dir: Path,
           device: str) -> None:
    """Generate images of chosen classes with a trained class-conditional model (cgan).

    \b
    img2img sample --label 7 -n 64 -o sevens.png
    img2img sample --label all -n 10 --seed 1 -o digits.png
    img2img sample --label cat --label dog --separate -o pets/
    """
    ctx = click.get_current_context()
    catalog = (ctx.obj or {}).get("catalog")
    if model_ref == runs.LATEST:
        if catalog is None:
            from img2img.cli import default_catalog

            catalog = default_catalog()
        model_ref = str(newest_sampling_run(catalog, runs_dir))
    trained = img2img.load(model_ref, device=device, runs_dir=runs_dir, catalog=catalog)
    model = trained.model
    if model.directions:
        raise img2img.Img2ImgError(
            f"{trained.checkpoint} is a '{model.name}' model, which translates images rather "
            "than drawing them from labels; use `img2img convert` with it, or pass a cgan run")
    indices = resolve_labels(labels, model.spec.classes)
    seed = secrets.randbelow(2**31) if seed is None else seed
    torch.manual_seed(seed)
    images = trained.sample(indices, count) * 2 - 1
    out = out or Path("sampled" if separate else "sampled.png")
    written = write_samples(images.cpu(), indices, model.spec.classes, out, per_label=count,
                            separate=separate, columns=columns)
    click.echo(f"Drew {len(images)} image(s) of {len(indices)} label(s) with "
               f"{trained.checkpoint} (seed {seed}) into {out}", err=True)
    for path in written:
        click.echo(str(path))
