"""`img2img sample`: draw images of chosen classes from a trained model that samples (cgan or any
plugin model without translation directions) and write them as a grid or one file each."""
from __future__ import annotations

import secrets
from pathlib import Path

import click
import torch

from img2img.cli import open_run, output_option, run_options

from .sampling import ALL, resolve_labels, write_samples


@click.command("sample", context_settings={"show_default": True})
@click.option("--label", "labels", multiple=True, default=(ALL,), metavar="NAME|INDEX|all",
              help="class to draw, by folder name or index; repeat for several; 'all' draws "
                   "every class, one row each")
@click.option("-n", "--count", type=click.IntRange(min=1), default=8, help="images per label")
@output_option(help="grid file (default: sampled.png), or with --separate a folder (default: "
                   "sampled/)")
@click.option("--separate", is_flag=True, help="write one PNG per image, <class>_<k>.png")
@click.option("--columns", type=click.IntRange(min=1), default=None,
              help="images per grid row (default: -n with several labels, else a square)")
@click.option("--seed", type=int, default=None,
              help="random seed for repeatable images (default: a fresh one, printed)")
@run_options("sample")
def sample(labels: tuple[str, ...], count: int, out: Path | None, separate: bool,
           columns: int | None, seed: int | None, model_ref: str, runs_dir: Path,
           device: str) -> None:
    """Generate images of chosen classes with a trained class-conditional model (cgan).

    \b
    img2img sample --label 7 -n 64 -o sevens.png
    img2img sample --label all -n 10 --seed 1 -o digits.png
    img2img sample --label cat --label dog --separate -o pets/
    """
    trained = open_run(model_ref, runs_dir, device, "sample")
    model = trained.model
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
