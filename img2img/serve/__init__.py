"""`img2img serve`: trained runs behind a web page and an HTTP API, an ASGI app (Starlette) that
any ASGI server can run; the command runs it on uvicorn. Translations go through the code
`img2img convert` uses, so the served image and the converted file are the same bytes.

`create_app(models=[...])` builds the app; it needs the serve extra
(`pip install 'img2img[serve]'`), which `require_extra()` checks with a one-line message."""
from __future__ import annotations

import importlib
from typing import Any

from ..errors import Img2ImgError

# The import names of what the serve extra installs (python-multipart imports as this).
EXTRA_MODULES = ("starlette", "uvicorn", "python_multipart")
INSTALL = "pip install 'img2img[serve]'"


class MissingExtra(Img2ImgError):
    """An optional dependency is not installed; the message names the install command."""

    exit_code = 2


def require_extra() -> None:
    """Raise `MissingExtra` (one line, the install command) unless the serve extra is there."""
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtra(f"img2img serve needs the serve extra ({module} is not "
                               f"installed): {INSTALL}") from None


def create_app(models: Any = None, **settings: Any) -> Any:
    """The ASGI app serving `models`: run folders, checkpoint files or 'latest' (the newest
    run under `runs_dir`), or models `img2img.load` returned; see `img2img.serve.app.create_app`
    for the settings (limits, concurrency, device)."""
    require_extra()
    from .app import create_app as create

    return create(models, **settings)


__all__ = ["INSTALL", "MissingExtra", "create_app", "require_extra"]
