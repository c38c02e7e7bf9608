"""`img2img health RUN`: the verdict on a run's training health, for a person or a pipeline.
Exit code 0 when healthy, 1 when problems were found, 2 when RUN is not a run that can be
judged (click's usage-error code)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import CheckpointError
from ..health import judge_run, render_text
from ..health.render import summary


@click.command("health")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="print the verdict as JSON (problem, step, detail, signal, suggestions)")
@click.pass_context
def health(ctx: click.Context, run: Path, as_json: bool) -> None:
    """Say whether the run in folder RUN trained healthily, from its metrics.jsonl.

    Reports whether and when the discriminator overpowered the generator, whether the outputs
    collapsed, which steps were skipped or rolled back and any NaN, each with what to try.
    Exit code 0: healthy; 1: problems found; 2: RUN is not a run folder with a log.
    """
    try:
        verdict = judge_run(run)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="RUN") from None
    if as_json:
        click.echo(json.dumps(summary(verdict), indent=2))
    else:
        click.echo(render_text(verdict), nl=False)
    if not verdict.healthy:
        ctx.exit(1)
