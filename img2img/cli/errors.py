"""How the command line reports errors: what a user can fix is one line on stderr with the
error's exit code; anything else is an internal error, with the traceback only under --debug."""
from __future__ import annotations

import os
from typing import Any

import click

from ..errors import Img2ImgError, Interrupted


class Failure(click.ClickException):
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
        except Interrupted as exc:  # a stop that was asked for: said plainly, not as an error
            click.echo(str(exc), err=True)
            ctx.exit(exc.exit_code)
        except Img2ImgError as exc:
            if _debug(ctx):
                raise
            raise Failure(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if _debug(ctx):
                raise
            raise Failure(f"internal error: {type(exc).__name__}: {exc}\n"
                           "Run again with `img2img --debug ...` for the traceback.", 1) from None


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.params.get("debug")) or os.environ.get("IMG2IMG_DEBUG", "") not in ("", "0")
