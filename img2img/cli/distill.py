"""`img2img distill TEACHER -o STUDENT`: a smaller student run that translates like the teacher
run (`img2img.distill`); prints both models' cost, speed and agreement."""
from __future__ import annotations

from pathlib import Path

import click

from ..distill import RECORD, distill, summary
from ..networks.factory import GENERATORS
from ..networks.macs import parse_count
from .options import current_catalog, device_option, output_option

EPILOG = """\b
Examples:
  img2img distill runs/horse2zebra -o runs/horse2zebra-small
  img2img distill runs/facades -o runs/facades-small --macs 2G --minutes 30
  img2img distill latest_net_G.pth -o runs/small --data datasets/facades
  img2img train distill --resume runs/horse2zebra-small      continue one
"""


def _count(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_count(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a count of MACs such as 5G or 800M") from None


def distill_command() -> click.Command:
    @click.command("distill", epilog=EPILOG, context_settings={"show_default": True})
    @click.argument("teacher", metavar="TEACHER_RUN", type=click.Path(path_type=Path))
    @output_option(required=True, help="the student run folder to create (must not exist)")
    @click.option("--width", type=click.IntRange(min=1), default=None,
                  help="the student's width, filters in its first layer  [default: 16]")
    @click.option("--macs", callback=_count, default=None, metavar="COUNT",
                  help="instead of --width: the widest student within this many "
                       "multiply-accumulates per image at the training size (5G, 800M)")
    @click.option("--generator", type=click.Choice(GENERATORS), default=None,
                  help="the student's architecture  [default: the teacher's]")
    @click.option("--data", type=click.Path(path_type=Path), default=None, metavar="DIR",
                  help="the images to distil on, in the teacher's layout  [default: the "
                       "teacher run's training data]")
    @click.option("--max-steps", type=click.IntRange(min=1), default=None,
                  help="training steps  [default: a quarter of the teacher's]")
    @click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
                  help="stop after about this long (and at --max-steps at the latest)")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="images per step  [default: the teacher run's]")
    @click.option("--workers", type=click.IntRange(min=0), default=2,
                  help="data-loading worker processes")
    @device_option()
    def distill_run(teacher: Path, out: Path, width: int | None, macs: float | None,
                    generator: str | None, data: Path | None, max_steps: int | None,
                    minutes: float | None, batch_size: int | None, workers: int,
                    device: str) -> None:
        """Train a smaller student that translates like TEACHER_RUN.

        For each direction the teacher translates, a student generator (the teacher's
        architecture, narrower; or --generator) learns to reproduce the teacher's outputs on
        the teacher's training data: L1 to its output, its intermediate features matched
        through learned 1x1 projections, and a discriminator telling the two apart. TEACHER_RUN
        is a run folder, a checkpoint, an imported run or a reference .pth generator.

        The student is an ordinary run: convert, eval, export (--int8 too) and serve take it,
        and `img2img train distill --resume` continues it. Its config.json names the teacher
        (path and SHA-256); distill.json records both models' MACs, parameters and convert
        speed on this machine, and the student's PSNR to the teacher's outputs (and the task
        metric, when the data has a test split).
        """
        extra = {"batch_size": batch_size} if batch_size is not None else {}
        run_dir, record = distill(teacher, out, width=width, macs=macs, generator=generator,
                                  data=data, max_steps=max_steps, minutes=minutes,
                                  device=device, catalog=current_catalog(), workers=workers,
                                  **extra)
        for line in summary(record):
            click.echo(line, err=True)
        click.echo(f"Recorded in {run_dir / RECORD}", err=True)
        click.echo(str(run_dir))

    return distill_run
