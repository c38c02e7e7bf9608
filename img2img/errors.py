"""Errors a user can act on. The CLI prints them as one line on stderr (no traceback unless
`--debug`) and exits with the error's exit code; everything else is a bug and keeps its traceback."""
from __future__ import annotations


class Img2ImgError(Exception):
    """A problem with the user's input or setup, explained in the message."""

    exit_code = 1


class Interrupted(Img2ImgError):
    """Training stopped on request (Ctrl-C or SIGTERM) after saving a checkpoint: not a failure.
    The exit code is 128 + the signal's number, as shells report it (130 for Ctrl-C, 143 for
    SIGTERM)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class DataError(Img2ImgError):
    """A data folder is missing, empty, laid out wrongly, or holds no readable image."""

    exit_code = 2


class PluginError(Img2ImgError):
    """A plugin could not be loaded or registered something invalid."""


class CheckpointError(Img2ImgError):
    """A run folder or checkpoint is missing, incomplete or not readable."""


class SettingsError(Img2ImgError):
    """A setting that is unknown or outside its valid range (a usage error: exit code 2)."""

    exit_code = 2
