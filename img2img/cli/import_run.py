"""`img2img import`: checkpoints of the pix2pix/CycleGAN reference implementation in, an ordinary
img2img run out (which `convert`, `eval`, `export` and `train --init-from` take)."""
from __future__ import annotations

from pathlib import Path

import click

from ..interop.reference import importable, import_run
from ..networks.options import BATCH_STATS
from ..registry.catalog import Catalog
from ..runs.folders import read_config
from .options import output_option

EPILOG = """\b
Reference file names, and where they go:
  CycleGAN  latest_net_G_A.pth          a_to_b (the first generator file)
            latest_net_G_B.pth          b_to_a (the second, or --direction b_to_a)
            latest_net_D_A.pth          --d b=FILE (D_A judges domain b, the fakes of G_A)
            latest_net_D_B.pth          --d a=FILE
  pix2pix   latest_net_G.pth            a_to_b
            latest_net_D.pth            --d FILE (its one discriminator)
  a published single model (e.g. horse2zebra.pth) is one generator file

\b
Examples:
  img2img import latest_net_G_A.pth latest_net_G_B.pth --model-family cyclegan -o runs/h2z
  img2img import latest_net_G.pth --d latest_net_D.pth --model-family pix2pix -o runs/facades
  img2img train pix2pix --data facades/ --init-from runs/facades
"""


def _named(value: str) -> tuple[str | None, str]:
    """`NAME=FILE` or `FILE`; a path with '=' in a folder name stays a path."""
    name, sep, path = value.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, path
    return None, value


def import_command(catalog: Catalog) -> click.Command:
    families = importable(catalog)

    @click.command("import", epilog=EPILOG, context_settings={"show_default": True})
    @click.argument("generators", nargs=-1, required=True, metavar="GENERATOR.pth...",
                    type=click.Path(dir_okay=False, path_type=Path))
    @output_option(help="the run folder to write (default: runs/<model>-imported-<date>-<time>)")
    @click.option("--model-family", "family", type=click.Choice(families), default=None,
                  help="the model that trained the weights (a state dict does not say)")
    @click.option("--direction", default=None,
                  help="for one generator file of a two-way model: the direction it maps "
                       "(default: the model's first, a_to_b)")
    @click.option("--d", "--discriminator", "discriminators", multiple=True,
                  metavar="[NAME=]FILE",
                  help="a discriminator to fine-tune from; NAME is the domain it judges "
                       "(a or b), needed when the model has several. Repeatable")
    @click.option("--size", type=click.IntRange(min=8), default=None,
                  help="the size the model was trained at (default: a U-Net's own, 256 for a "
                       "ResNet)")
    @click.option("--batch-stats", type=click.Choice(BATCH_STATS), default="per-image",
                  help="batch norm at inference: per-image statistics (the reference's test.py "
                       "default, and img2img's) or the running averages (its --eval)")
    def import_reference(generators: tuple[Path, ...], out: Path | None, family: str | None,
                         direction: str | None, discriminators: tuple[str, ...],
                         size: int | None, batch_stats: str) -> None:
        """Turn reference checkpoints (junyanz/pytorch-CycleGAN-and-pix2pix .pth files) into
        an img2img run.

        The architecture is read from the files (ResNet-6/9 or U-Net depth, widths, channels,
        batch or instance norm); name the model family, and for a one-way file of a two-way
        model its --direction. Files are read as plain tensors (torch.load weights_only): no
        code in them runs. The run holds weights only: use it with convert, eval and export,
        or start training from it with `img2img train MODEL --init-from RUN`.
        """
        run = import_run(generators, out, family=family, direction=direction,
                         discriminators=[_named(d) for d in discriminators], size=size,
                         batch_stats=batch_stats, catalog=catalog)
        record = read_config(run)
        options = record["options"]
        click.echo(f"Imported a {record['model']} model ({options['generator']}, ngf "
                   f"{options['ngf']}, {options['norm']} norm) into {run}", err=True)
        for network in record["imported"]["untrained"]:
            kind, name = network.split(".", 1)
            click.echo(f"note: no file for {kind[:-1]} '{name}': it holds fresh weights, "
                       "which convert does not use and fine-tuning trains from scratch",
                       err=True)
        click.echo(str(run))

    return import_reference
